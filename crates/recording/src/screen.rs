//! Playback of RDP recordings: the target's PDUs, as recorded, decoded into the screen the
//! client saw (IronRDP's session state machine and graphics decoders: bitmap updates, RLE and
//! planar bitmaps, bulk decompression, pointer), then sampled into PNG frames or a still at any
//! time. The proxy asks the target for what this can draw (no drawing orders, codecs or
//! surface commands).

use std::io::Read;

use ironrdp_graphics::image_processing::PixelFormat;
use ironrdp_pdu::rdp::capability_sets::CapabilitySet;
use ironrdp_pdu::rdp::client_info::CompressionType;
use ironrdp_pdu::rdp::headers::{ShareControlHeader, ShareControlPdu};
use ironrdp_pdu::Action;
use ironrdp_session::image::DecodedImage;
use ironrdp_session::{ActiveStage, ActiveStageBuilder, ActiveStageOutput};

use crate::{Event, EventKind, Reader, RecordingError};

/// How the recorded stream is read (the recording's setup event).
#[derive(Debug, Clone, Default)]
struct Setup {
    io_channel: u16,
    user_channel: u16,
    compression: Option<CompressionType>,
}

/// The screen of an RDP recording as its events are fed in order.
#[derive(Default)]
pub struct RdpScreen {
    setup: Setup,
    stage: Option<ActiveStage>,
    image: Option<DecodedImage>,
}

impl RdpScreen {
    pub fn new() -> RdpScreen {
        RdpScreen { setup: Setup { io_channel: 1003, user_channel: 1007, compression: None }, ..Default::default() }
    }

    /// Feeds one event; `true` when the screen changed.
    pub fn feed(&mut self, e: &Event) -> bool {
        match e.kind {
            EventKind::Setup => {
                self.read_setup(&e.data);
                false
            }
            EventKind::Output => self.output(&e.data),
            _ => false,
        }
    }

    fn read_setup(&mut self, data: &[u8]) {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else { return };
        let rdp = &v["rdp"];
        let channel = |k: &str, d: u16| rdp[k].as_u64().and_then(|c| u16::try_from(c).ok()).unwrap_or(d);
        self.setup.io_channel = channel("io_channel", 1003);
        self.setup.user_channel = channel("user_channel", 1007);
        self.setup.compression = match rdp["compression"].as_str() {
            Some("k8") => Some(CompressionType::K8),
            Some("k64") => Some(CompressionType::K64),
            Some("rdp6") => Some(CompressionType::Rdp6),
            Some("rdp61") => Some(CompressionType::Rdp61),
            _ => None,
        };
    }

    fn output(&mut self, pdu: &[u8]) -> bool {
        let slow = pdu.first() == Some(&0x03);
        if slow {
            if let Some((share_id, width, height)) = demand_active(pdu) {
                // (Re)activation: a new screen of the size the target announces.
                self.stage = Some(
                    ActiveStageBuilder {
                        static_channels: ironrdp_svc::StaticChannelSet::new(),
                        user_channel_id: self.setup.user_channel,
                        io_channel_id: self.setup.io_channel,
                        message_channel_id: None,
                        share_id,
                        compression_type: self.setup.compression,
                        enable_server_pointer: false,
                        pointer_software_rendering: true,
                    }
                    .build(),
                );
                self.image = Some(DecodedImage::new(PixelFormat::RgbA32, width, height));
                return true;
            }
        }
        let (Some(stage), Some(image)) = (self.stage.as_mut(), self.image.as_mut()) else { return false };
        let action = if slow { Action::X224 } else { Action::FastPath };
        // The PDUs come from the target: a decoder that panics on one must not take the
        // recorder (live view) or the server's worker with it; the screen stops there.
        let processed =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stage.process(image, action, pdu, None)));
        match processed {
            Ok(Ok(outputs)) => outputs.iter().any(|o| matches!(o, ActiveStageOutput::GraphicsUpdate(_))),
            // A PDU the player does not draw (or cannot): the screen stays as it was.
            Ok(Err(_)) => false,
            Err(_) => {
                self.stage = None;
                false
            }
        }
    }

    /// The screen now: width, height, RGBA pixels.
    pub fn pixels(&self) -> Option<(u16, u16, &[u8])> {
        self.image.as_ref().map(|i| (i.width(), i.height(), i.data()))
    }

    /// The screen now as a PNG image.
    pub fn png(&self) -> Option<Vec<u8>> {
        let (w, h, rgba) = self.pixels()?;
        encode_png(w, h, rgba)
    }
}

/// The share id and desktop size of a Demand Active PDU (`None`: another PDU).
pub fn demand_active(pdu: &[u8]) -> Option<(u32, u16, u16)> {
    use ironrdp_pdu::mcs::McsMessage;
    use ironrdp_pdu::x224::X224;
    let McsMessage::SendDataIndication(m) = ironrdp_core::decode::<X224<McsMessage<'_>>>(pdu).ok()?.0 else {
        return None;
    };
    let data = &m.user_data;
    if data.len() < 4 || u16::from_le_bytes([data[2], data[3]]) & 0x0F != 0x1 {
        return None;
    }
    let header: ShareControlHeader = ironrdp_core::decode(data).ok()?;
    let ShareControlPdu::ServerDemandActive(d) = header.share_control_pdu else { return None };
    d.pdu.capability_sets.iter().find_map(|c| match c {
        CapabilitySet::Bitmap(b) if b.desktop_width > 0 && b.desktop_height > 0 => {
            Some((header.share_id, b.desktop_width, b.desktop_height))
        }
        _ => None,
    })
}

/// An RGBA image as PNG (opaque: the alpha the decoder leaves is not the picture's).
pub fn encode_png(width: u16, height: u16, rgba: &[u8]) -> Option<Vec<u8>> {
    let mut rgb = Vec::with_capacity(usize::from(width) * usize::from(height) * 3);
    for px in rgba.chunks_exact(4) {
        rgb.extend_from_slice(&px[..3]);
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, u32::from(width), u32::from(height));
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Fast);
        let mut w = enc.write_header().ok()?;
        w.write_image_data(&rgb).ok()?;
    }
    Some(out)
}

/// One sampled frame: when (µs since the recording started) and the PNG.
pub struct Frame {
    pub at: u64,
    pub png: Vec<u8>,
}

/// The recording's frames: the screen each time it changed, at most one per `interval` µs
/// (the last change in an interval wins), and the last screen at the end. `each` gets them in
/// order; the number of frames comes back.
pub fn frames<R: Read>(
    reader: Reader<R>,
    interval: u64,
    mut each: impl FnMut(Frame) -> std::io::Result<()>,
) -> Result<u64, RecordingError> {
    let mut screen = RdpScreen::new();
    let mut count = 0;
    let mut dirty_since: Option<u64> = None;
    let mut last_emit: Option<u64> = None;
    let mut last_at = 0;
    let mut emit = |screen: &RdpScreen, at: u64, count: &mut u64| -> Result<(), RecordingError> {
        if let Some(png) = screen.png() {
            each(Frame { at, png }).map_err(RecordingError::Io)?;
            *count += 1;
        }
        Ok(())
    };
    for e in reader {
        let e = e?;
        // A pending change is shown once the interval since the last frame has passed.
        if let Some(since) = dirty_since {
            if last_emit.is_none_or(|l| e.at >= l + interval) && e.at > since {
                let at = last_emit.map_or(since, |l| since.max(l + interval));
                emit(&screen, at, &mut count)?;
                last_emit = Some(at);
                dirty_since = None;
            }
        }
        last_at = e.at;
        if screen.feed(&e) && dirty_since.is_none() {
            dirty_since = Some(e.at);
        }
    }
    if dirty_since.is_some() {
        let at = last_emit.map_or(last_at, |l| last_at.max(l + 1));
        emit(&screen, at, &mut count)?;
    }
    Ok(count)
}

/// The screen at `at` µs into the recording (PNG); `None` before anything was shown.
pub fn still<R: Read>(reader: Reader<R>, at: u64) -> Result<Option<Vec<u8>>, RecordingError> {
    let mut screen = RdpScreen::new();
    for e in reader {
        let e = e?;
        if e.at > at {
            break;
        }
        screen.feed(&e);
    }
    Ok(screen.png())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_png_holds_the_picture() {
        let rgba = [10u8, 20, 30, 255, 40, 50, 60, 255];
        let png = encode_png(2, 1, &rgba).unwrap();
        assert!(png.starts_with(b"\x89PNG"));
    }

    proptest! {
        /// Whatever a recording holds, the player neither panics nor shows a screen before an
        /// activation.
        #[test]
        fn any_pdus_feed_without_panic(pdus in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..20)) {
            let mut screen = RdpScreen::new();
            for (i, p) in pdus.into_iter().enumerate() {
                screen.feed(&Event::new(i as u64, EventKind::Output, 0, p));
            }
            prop_assert!(screen.pixels().is_none());
        }
    }
}
