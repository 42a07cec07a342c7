//! The parts of the RDP wire format the proxy reads or writes itself (pure, bounded, never
//! panicking on input; property-tested): framing of TPKT and fast-path PDUs, the X.224
//! connection request and confirm, and — through the IronRDP PDU crate — the MCS PDUs that name
//! channels and the Client Info PDU whose credentials are replaced.

use std::borrow::Cow;

use ironrdp_core::{decode, encode_vec, WriteBuf};
use ironrdp_pdu::mcs::{ConnectInitial, ConnectResponse, McsMessage};
use ironrdp_pdu::rdp::client_info::ClientInfoFlags;
use ironrdp_pdu::rdp::headers::BasicSecurityHeaderFlags;
use ironrdp_pdu::rdp::ClientInfoPdu;
use ironrdp_pdu::x224::X224;

/// TLS (`PROTOCOL_SSL`) in the negotiation's protocol flags.
pub const PROTOCOL_SSL: u32 = 0x1;
/// CredSSP (`PROTOCOL_HYBRID`).
pub const PROTOCOL_HYBRID: u32 = 0x2;

/// `SSL_REQUIRED_BY_SERVER`: the failure code for a client that offers no TLS.
pub const SSL_REQUIRED_BY_SERVER: u32 = 1;

/// The largest X.224 connection request accepted (a cookie or token of a few hundred bytes).
pub const MAX_CONNECT_REQUEST: usize = 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("not an RDP PDU (first byte {0:#04x})")]
    NotRdp(u8),
    #[error("a PDU length of {0} bytes is impossible")]
    BadLength(usize),
    #[error("not an X.224 connection request")]
    NotConnectRequest,
    #[error("not an X.224 connection confirm")]
    NotConnectConfirm,
    #[error("the connection request's cookie is not text")]
    BadCookie,
}

/// The length of the PDU that starts with `head` (TPKT or fast-path), `None` while too few
/// bytes are there to tell.
pub fn frame_len(head: &[u8]) -> Result<Option<usize>, WireError> {
    let Some(&first) = head.first() else { return Ok(None) };
    if first == 0x03 {
        let Some(len) = head.get(2..4) else { return Ok(None) };
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        if len < 7 {
            return Err(WireError::BadLength(len));
        }
        return Ok(Some(len));
    }
    // Fast-path: the action in the low two bits is 0.
    if first & 0x03 != 0 {
        return Err(WireError::NotRdp(first));
    }
    let Some(&b1) = head.get(1) else { return Ok(None) };
    let len = if b1 & 0x80 != 0 {
        let Some(&b2) = head.get(2) else { return Ok(None) };
        (usize::from(b1 & 0x7f) << 8) | usize::from(b2)
    } else {
        usize::from(b1)
    };
    let header = if b1 & 0x80 != 0 { 3 } else { 2 };
    if len <= header {
        return Err(WireError::BadLength(len));
    }
    Ok(Some(len))
}

/// A slow-path (TPKT) PDU, as opposed to a fast-path one.
pub fn is_slow_path(frame: &[u8]) -> bool {
    frame.first() == Some(&0x03)
}

/// What a client's X.224 connection request says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// The cookie (`Cookie: mstshash=NAME`) or routing token (`Cookie: msts=…`, or the opaque
    /// text a load-balancing `.rdp` setting sends).
    pub name: Option<String>,
    /// The security protocols offered (0: Standard RDP Security only).
    pub protocols: u32,
}

/// Parses a client's X.224 connection request (one whole TPKT).
pub fn parse_connect_request(frame: &[u8]) -> Result<ConnectRequest, WireError> {
    // TPKT (4), LI, CR code, DST-REF (2), SRC-REF (2), class.
    if frame.len() < 11 || frame[0] != 0x03 || frame[5] & 0xF0 != 0xE0 {
        return Err(WireError::NotConnectRequest);
    }
    if usize::from(frame[4]) + 5 != frame.len() {
        return Err(WireError::NotConnectRequest);
    }
    let mut rest = &frame[11..];
    let mut name = None;
    if !rest.is_empty() && rest[0] != 0x01 {
        let end = rest.windows(2).position(|w| w == b"\r\n").ok_or(WireError::BadCookie)?;
        let text = std::str::from_utf8(&rest[..end]).map_err(|_| WireError::BadCookie)?;
        if !text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(WireError::BadCookie);
        }
        let value =
            text.strip_prefix("Cookie: mstshash=").or_else(|| text.strip_prefix("Cookie: msts=")).unwrap_or(text);
        name = Some(value.to_owned());
        rest = &rest[end + 2..];
    }
    let mut protocols = 0;
    if rest.len() >= 8 && rest[0] == 0x01 && rest[2] == 0x08 && rest[3] == 0x00 {
        protocols = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    }
    Ok(ConnectRequest { name, protocols })
}

/// The proxy's own connection request to a target: a cookie naming the account, and the
/// protocols it offers.
pub fn connect_request(cookie: &str, protocols: u32) -> Vec<u8> {
    let cookie: String = cookie.chars().filter(|c| c.is_ascii_graphic()).take(64).collect();
    let text = format!("Cookie: mstshash={cookie}\r\n");
    let len = 11 + text.len() + 8;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&[0x03, 0x00]);
    out.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
    out.push(u8::try_from(len - 5).unwrap_or(u8::MAX));
    out.extend_from_slice(&[0xE0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&[0x01, 0x00, 0x08, 0x00]);
    out.extend_from_slice(&protocols.to_le_bytes());
    out
}

/// What a target's X.224 connection confirm says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    /// The protocol selected, with the response flags.
    Selected { protocol: u32, flags: u8 },
    /// The negotiation failed with this code.
    Failed(u32),
    /// No negotiation data: Standard RDP Security.
    Legacy,
}

pub fn parse_connect_confirm(frame: &[u8]) -> Result<Confirm, WireError> {
    if frame.len() < 11 || frame[0] != 0x03 || frame[5] & 0xF0 != 0xD0 {
        return Err(WireError::NotConnectConfirm);
    }
    let rest = &frame[11..];
    if rest.len() < 8 {
        return Ok(Confirm::Legacy);
    }
    let value = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    match rest[0] {
        0x02 => Ok(Confirm::Selected { protocol: value, flags: rest[1] }),
        0x03 => Ok(Confirm::Failed(value)),
        _ => Err(WireError::NotConnectConfirm),
    }
}

/// An X.224 connection confirm: the protocol selected (type 2) or a failure code (type 3).
pub fn connect_confirm(kind: u8, flags: u8, value: u32) -> Vec<u8> {
    let mut out = vec![0x03, 0x00, 0x00, 0x13, 0x0E, 0xD0, 0, 0, 0x12, 0x34, 0x00, kind, flags, 0x08, 0x00];
    out.extend_from_slice(&value.to_le_bytes());
    out
}

/// The static virtual channels a client asks for in its MCS Connect Initial, in order.
pub fn requested_channels(frame: &[u8]) -> Option<Vec<String>> {
    let ci: ConnectInitial = decode(frame.get(7..)?).ok()?;
    Some(
        ci.channel_names()
            .unwrap_or_default()
            .iter()
            .map(|c| c.name.as_str().unwrap_or("?").to_ascii_lowercase())
            .collect(),
    )
}

/// The first GCC user data block after `key` ("Duca" in a Connect Initial, "McDn" in a
/// Connect Response) if it is of `kind`: its offset in `frame` and its length.
fn first_gcc_block(frame: &[u8], key: &[u8; 4], kind: u16) -> Option<(usize, usize)> {
    let at = frame.windows(4).position(|w| w == key)? + 4;
    // The user data's PER length: one byte, or two with the top bit set.
    let start = at + if frame.get(at)? & 0x80 != 0 { 2 } else { 1 };
    let header = frame.get(start..start + 4)?;
    let (t, len) =
        (u16::from_le_bytes([header[0], header[1]]), usize::from(u16::from_le_bytes([header[2], header[3]])));
    (t == kind && start + len <= frame.len()).then_some((start, len))
}

/// Writes `value` at `offset` in the first GCC block after `key` if it is of `kind` and that
/// long; `false` when it is not there.
fn patch_core(frame: &mut [u8], key: &[u8; 4], kind: u16, offset: usize, value: u32) -> bool {
    match first_gcc_block(frame, key, kind) {
        Some((start, len)) if len >= offset + 4 => {
            frame[start + offset..start + offset + 4].copy_from_slice(&value.to_le_bytes());
            true
        }
        _ => false,
    }
}

/// Sets, in place, the security protocol a client's Connect Initial says the server selected
/// (its core data), when the two legs negotiated differently (NLA with the client, TLS with
/// the target): the target checks it against its own choice. `false`: not found.
pub fn set_selected_protocol(frame: &mut [u8], protocol: u32) -> bool {
    patch_core(frame, b"Duca", 0xC001, 212, protocol)
}

/// Sets, in place, the protocols a target's Connect Response says the client requested (its
/// core data) to what the client did request, which the client may check.
pub fn set_requested_protocols(frame: &mut [u8], protocols: u32) -> bool {
    patch_core(frame, b"McDn", 0x0C01, 8, protocols)
}

/// The I/O channel and the static channels' ids (in the client's order) of an MCS Connect
/// Response.
pub fn granted_channels(frame: &[u8]) -> Option<(u16, Vec<u16>)> {
    let cr: ConnectResponse = decode(frame.get(7..)?).ok()?;
    Some((cr.global_channel_id(), cr.channel_ids()))
}

/// The MCS channel a slow-path PDU is sent on (request or indication), with its user data.
pub fn mcs_data(frame: &[u8]) -> Option<(u16, u16, &[u8])> {
    match decode::<X224<McsMessage<'_>>>(frame).ok()?.0 {
        McsMessage::SendDataRequest(m) => match m.user_data {
            Cow::Borrowed(d) => Some((m.initiator_id, m.channel_id, d)),
            Cow::Owned(_) => None,
        },
        McsMessage::SendDataIndication(m) => match m.user_data {
            Cow::Borrowed(d) => Some((m.initiator_id, m.channel_id, d)),
            Cow::Owned(_) => None,
        },
        _ => None,
    }
}

/// A slow-path PDU is an MCS Disconnect Provider Ultimatum.
pub fn is_disconnect(frame: &[u8]) -> bool {
    matches!(decode::<X224<McsMessage<'_>>>(frame).map(|m| m.0), Ok(McsMessage::DisconnectProviderUltimatum(_)))
}

/// The sign-in a client sent in its Client Info PDU.
pub struct ClientLogin {
    pub initiator: u16,
    pub channel: u16,
    pub pdu: ClientInfoPdu,
}

impl ClientLogin {
    /// The user name as typed: `USER@DOMAIN` put back together when the client split it.
    pub fn username(&self) -> String {
        let c = &self.pdu.client_info.credentials;
        match c.domain.as_deref().filter(|d| !d.is_empty()) {
            Some(d) if !c.username.contains('@') => format!("{}@{d}", c.username),
            _ => c.username.clone(),
        }
    }

    /// The bulk compression the client asked for (the recording player needs it).
    pub fn compression(&self) -> Option<&'static str> {
        use ironrdp_pdu::rdp::client_info::CompressionType;
        let i = &self.pdu.client_info;
        i.flags.contains(ClientInfoFlags::COMPRESSION).then_some(match i.compression_type {
            CompressionType::K8 => "k8",
            CompressionType::K64 => "k64",
            CompressionType::Rdp6 => "rdp6",
            CompressionType::Rdp61 => "rdp61",
        })
    }

    /// The password typed (not a redirection cookie).
    pub fn password(&self) -> Option<&str> {
        let i = &self.pdu.client_info;
        i.password_cookie.is_none().then_some(i.credentials.password.as_str())
    }

    /// The same PDU with the target's credentials and automatic logon, encoded. The client's
    /// own password is wiped from this value.
    pub fn rewritten(&mut self, username: &str, password: &str) -> Option<zeroize::Zeroizing<Vec<u8>>> {
        use zeroize::Zeroize;
        let info = &mut self.pdu.client_info;
        info.credentials.password.zeroize();
        info.password_cookie = None;
        info.credentials.username = username.to_owned();
        info.credentials.domain = None;
        info.credentials.password = password.to_owned();
        info.flags |= ClientInfoFlags::AUTOLOGON;
        // No bulk compression: a watcher's screen can start decoding at any PDU (compressed
        // PDUs depend on all before them), at the cost of bandwidth (bitmaps stay compressed).
        info.flags.remove(ClientInfoFlags::COMPRESSION);
        let mut buf = WriteBuf::new();
        let encoded =
            ironrdp_pdu::mcs::encode_send_data_request(self.initiator, self.channel, &self.pdu, &mut buf).is_ok();
        self.pdu.client_info.credentials.password.zeroize();
        let mut out = buf.filled().to_vec();
        buf.clear();
        encoded.then(|| zeroize::Zeroizing::new(std::mem::take(&mut out)))
    }
}

impl Drop for ClientLogin {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.pdu.client_info.credentials.password.zeroize();
    }
}

/// The Client Info PDU, if this slow-path PDU is one.
pub fn client_login(frame: &[u8]) -> Option<ClientLogin> {
    let (initiator, channel, data) = mcs_data(frame)?;
    let flags = u16::from_le_bytes([*data.first()?, *data.get(1)?]);
    if flags & BasicSecurityHeaderFlags::INFO_PKT.bits() == 0 {
        return None;
    }
    let pdu: ClientInfoPdu = decode(data).ok()?;
    Some(ClientLogin { initiator, channel, pdu })
}

/// The client's Confirm Active PDU with what a recording player cannot replay taken out: no
/// drawing orders (the server sends bitmaps instead), no surface commands or bitmap codecs
/// (plain, RLE or planar bitmaps). `None`: not a Confirm Active PDU.
pub fn decodable_confirm_active(frame: &[u8]) -> Option<Vec<u8>> {
    use ironrdp_pdu::rdp::capability_sets::{CapabilitySet, Order, OrderFlags, OrderSupportExFlags};
    use ironrdp_pdu::rdp::headers::{ShareControlHeader, ShareControlPdu};
    let (initiator, channel, data) = mcs_data(frame)?;
    if data.len() < 4 || u16::from_le_bytes([data[2], data[3]]) & 0x0F != 0x3 {
        return None;
    }
    let mut header: ShareControlHeader = decode(data).ok()?;
    let ShareControlPdu::ClientConfirmActive(confirm) = &mut header.share_control_pdu else { return None };
    let caps = &mut confirm.pdu.capability_sets;
    caps.retain(|c| !matches!(c, CapabilitySet::SurfaceCommands(_) | CapabilitySet::BitmapCodecs(_)));
    for c in caps.iter_mut() {
        if let CapabilitySet::Order(_) = c {
            let flags = OrderFlags::NEGOTIATE_ORDER_SUPPORT | OrderFlags::ZERO_BOUNDS_DELTAS_SUPPORT;
            *c = CapabilitySet::Order(Order::new(flags, OrderSupportExFlags::empty(), 0, 0));
        }
    }
    let mut buf = WriteBuf::new();
    ironrdp_pdu::mcs::encode_send_data_request(initiator, channel, &header, &mut buf).ok()?;
    Some(buf.filled().to_vec())
}

/// The user channel an MCS Attach User Confirm grants.
pub fn attach_user_confirm(frame: &[u8]) -> Option<u16> {
    match decode::<X224<McsMessage<'_>>>(frame).ok()?.0 {
        McsMessage::AttachUserConfirm(c) => Some(c.initiator_id),
        _ => None,
    }
}

/// Share data PDU types the proxy looks for.
pub const PDUTYPE2_INPUT: u8 = 0x1C;
pub const PDUTYPE2_SAVE_SESSION_INFO: u8 = 0x26;

/// The share data PDU type (`pduType2`) of a slow-path PDU's user data, with the share id and
/// the PDU source: share control header (length, type, source), then share data header.
/// `security`: a basic security header comes first (licensing phase).
pub fn share_data_type(data: &[u8], security: bool) -> Option<(u8, u32, u16)> {
    let d = if security { data.get(4..)? } else { data };
    let pdu_type = u16::from_le_bytes([*d.get(2)?, *d.get(3)?]);
    if pdu_type & 0x0F != 0x7 {
        return None;
    }
    let source = u16::from_le_bytes([*d.get(4)?, *d.get(5)?]);
    let share_id = u32::from_le_bytes([*d.get(6)?, *d.get(7)?, *d.get(8)?, *d.get(9)?]);
    Some((*d.get(14)?, share_id, source))
}

/// Server-to-client PDUs that end a connection with a reason the client shows: a Set Error
/// Info PDU with `code` (MS-RDPBCGR 2.2.5.1.1), then an MCS Disconnect Provider Ultimatum.
/// `security`: the client still reads a basic security header (before activation).
pub fn error_and_disconnect(io_channel: u16, server_user: u16, share_id: u32, code: u32, security: bool) -> Vec<u8> {
    let mut data = Vec::new();
    if security {
        data.extend_from_slice(&[0, 0, 0, 0]);
    }
    // Share control header: totalLength, pduType (DATA | version 1), pduSource.
    let total: u16 = 6 + 12 + 4;
    data.extend_from_slice(&total.to_le_bytes());
    data.extend_from_slice(&0x0017u16.to_le_bytes());
    data.extend_from_slice(&server_user.to_le_bytes());
    // Share data header: shareId, pad, streamId, uncompressedLength, pduType2, compression.
    data.extend_from_slice(&share_id.to_le_bytes());
    data.extend_from_slice(&[0, 0x01]);
    data.extend_from_slice(&4u16.to_le_bytes());
    data.extend_from_slice(&[0x2F, 0, 0, 0]);
    data.extend_from_slice(&code.to_le_bytes());
    let pdu = ironrdp_pdu::mcs::SendDataIndication {
        initiator_id: server_user,
        channel_id: io_channel,
        user_data: Cow::Owned(data),
    };
    let mut out = encode_vec(&X224(pdu)).unwrap_or_default();
    let ultimatum =
        ironrdp_pdu::mcs::DisconnectProviderUltimatum::from_reason(ironrdp_pdu::mcs::DisconnectReason::UserRequested);
    out.extend(encode_vec(&X224(ultimatum)).unwrap_or_default());
    out
}

/// A Refresh Rect PDU (MS-RDPBCGR 2.2.11.2.1) from the client's user channel: the target
/// redraws the whole `width`×`height` screen (for a watcher who starts looking).
pub fn refresh_rect(user: u16, io: u16, share_id: u32, width: u16, height: u16) -> Vec<u8> {
    let mut data = Vec::new();
    let total: u16 = 6 + 12 + 4 + 8;
    data.extend_from_slice(&total.to_le_bytes());
    data.extend_from_slice(&0x0017u16.to_le_bytes());
    data.extend_from_slice(&user.to_le_bytes());
    data.extend_from_slice(&share_id.to_le_bytes());
    data.extend_from_slice(&[0, 0x01]);
    data.extend_from_slice(&(total - 14).to_le_bytes());
    data.extend_from_slice(&[0x21, 0, 0, 0]);
    data.extend_from_slice(&[1, 0, 0, 0]);
    for v in [0, 0, width.saturating_sub(1), height.saturating_sub(1)] {
        data.extend_from_slice(&v.to_le_bytes());
    }
    let pdu = ironrdp_pdu::mcs::SendDataRequest { initiator_id: user, channel_id: io, user_data: Cow::Owned(data) };
    encode_vec(&X224(pdu)).unwrap_or_default()
}

/// Set Error Info codes (MS-RDPBCGR 2.2.5.1.1) for the reasons the proxy ends a connection.
pub mod errinfo {
    /// "The disconnection was initiated by an administrative tool on the server."
    pub const ADMIN_DISCONNECT: u32 = 0x0000_0001;
    /// "… disconnected because of inactivity."
    pub const IDLE_TIMEOUT: u32 = 0x0000_0003;
    /// "… the time allotted for the session expired."
    pub const LOGON_TIMEOUT: u32 = 0x0000_0004;
    /// "The server denied the connection."
    pub const DENIED: u32 = 0x0000_0007;
    /// "The user cannot connect to the server due to insufficient access privileges."
    pub const INSUFFICIENT_PRIVILEGES: u32 = 0x0000_0009;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FREERDP_TLS: &[u8] = b"\x03\x00\x00\x34\x2f\xe0\x00\x00\x00\x00\x00Cookie: mstshash=alice#root@db1\r\n\x01\x00\x08\x00\x01\x00\x00\x00";
    const FREERDP_TOKEN: &[u8] =
        b"\x03\x00\x00\x1f\x1a\xe0\x00\x00\x00\x00\x00pcl_abcdef\r\n\x01\x00\x08\x00\x03\x00\x00\x00";

    #[test]
    fn freerdp_requests_name_the_target_and_offer_protocols() {
        let r = parse_connect_request(FREERDP_TLS).unwrap();
        assert_eq!(r, ConnectRequest { name: Some("alice#root@db1".into()), protocols: PROTOCOL_SSL });
        let r = parse_connect_request(FREERDP_TOKEN).unwrap();
        assert_eq!(r, ConnectRequest { name: Some("pcl_abcdef".into()), protocols: PROTOCOL_SSL | PROTOCOL_HYBRID });
        assert_eq!(frame_len(FREERDP_TLS).unwrap(), Some(FREERDP_TLS.len()));
    }

    #[test]
    fn our_request_parses_back() {
        let r = connect_request("root", PROTOCOL_SSL);
        assert_eq!(frame_len(&r).unwrap(), Some(r.len()));
        assert_eq!(parse_connect_request(&r).unwrap(), ConnectRequest { name: Some("root".into()), protocols: 1 });
        let c = connect_confirm(2, 0x1f, PROTOCOL_SSL);
        assert_eq!(parse_connect_confirm(&c).unwrap(), Confirm::Selected { protocol: 1, flags: 0x1f });
        let f = connect_confirm(3, 0, SSL_REQUIRED_BY_SERVER);
        assert_eq!(parse_connect_confirm(&f).unwrap(), Confirm::Failed(1));
    }

    #[test]
    fn fast_path_lengths() {
        assert_eq!(frame_len(&[0x00]).unwrap(), None);
        assert_eq!(frame_len(&[0x00, 0x10]).unwrap(), Some(16));
        assert_eq!(frame_len(&[0x04, 0x81, 0x00]).unwrap(), Some(256));
        assert_eq!(frame_len(&[0x00, 0x81]).unwrap(), None);
        assert!(frame_len(&[0x01, 0x10]).is_err());
        assert!(frame_len(&[0x03, 0x00, 0x00, 0x02]).is_err());
    }

    #[test]
    fn the_error_pdus_frame_and_decode() {
        let out = error_and_disconnect(1003, 1002, 0x103ea, errinfo::DENIED, false);
        let first = frame_len(&out).unwrap().unwrap();
        let (initiator, channel, data) = mcs_data(&out[..first]).unwrap();
        assert_eq!((initiator, channel), (1002, 1003));
        assert_eq!(share_data_type(data, false), Some((0x2F, 0x103ea, 1002)));
        assert!(is_disconnect(&out[first..]));
    }

    #[test]
    fn a_refresh_request_frames_and_decodes() {
        let pdu = refresh_rect(1007, 1003, 0x103ea, 800, 600);
        assert_eq!(frame_len(&pdu).unwrap(), Some(pdu.len()));
        let (initiator, channel, data) = mcs_data(&pdu).unwrap();
        assert_eq!((initiator, channel), (1007, 1003));
        assert_eq!(share_data_type(data, false), Some((0x21, 0x103ea, 1007)));
        assert_eq!(&data[data.len() - 4..], &[0x1f, 0x03, 0x57, 0x02], "right 799, bottom 599");
    }

    #[test]
    fn core_data_protocols_are_set_in_place() {
        let mut ci = b"\x03\x00\x01\x00junkDuca\x81\x00".to_vec();
        ci.extend_from_slice(&[0x01, 0xC0, 216, 0]);
        ci.extend_from_slice(&[0u8; 212]);
        assert!(set_selected_protocol(&mut ci, PROTOCOL_SSL));
        assert_eq!(&ci[ci.len() - 4..], &[1, 0, 0, 0]);
        let mut short = ci[..ci.len() - 1].to_vec();
        assert!(!set_selected_protocol(&mut short, PROTOCOL_SSL), "a block past the frame's end");
        let mut cr = b"McDn\x10".to_vec();
        cr.extend_from_slice(&[0x01, 0x0C, 12, 0, 4, 0, 8, 0, 0, 0, 0, 0]);
        assert!(set_requested_protocols(&mut cr, 3));
        assert_eq!(&cr[13..], &[3, 0, 0, 0]);
        assert!(!set_requested_protocols(&mut b"no key here".to_vec(), 3));
    }

    proptest! {
        #[test]
        fn core_data_patching_takes_any_bytes(mut bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = set_selected_protocol(&mut bytes, 1);
            let _ = set_requested_protocols(&mut bytes, 1);
        }

        #[test]
        fn parsers_take_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = frame_len(&bytes);
            let _ = parse_connect_request(&bytes);
            let _ = parse_connect_confirm(&bytes);
            let _ = requested_channels(&bytes);
            let _ = granted_channels(&bytes);
            let _ = mcs_data(&bytes);
            let _ = client_login(&bytes);
            let _ = share_data_type(&bytes, true);
        }

        #[test]
        fn a_request_after_a_valid_prefix_takes_any_tail(tail in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut f = FREERDP_TLS[..11].to_vec();
            f.extend_from_slice(&tail);
            let len = f.len();
            f[2..4].copy_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
            f[4] = u8::try_from(len.saturating_sub(5).min(255)).unwrap();
            let _ = parse_connect_request(&f);
        }
    }
}
