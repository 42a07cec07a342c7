//! Reading whole RDP PDUs from a stream, bounded by the format's own limits (a TPKT is at most
//! 65,535 bytes, a fast-path PDU 32,767), cancel-safe for `select!`.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::wire::frame_len;

#[derive(Default)]
pub struct FrameReader {
    buf: BytesMut,
}

impl FrameReader {
    /// A reader that starts with bytes another one read ahead.
    pub fn with(buf: BytesMut) -> FrameReader {
        FrameReader { buf }
    }

    /// The next whole PDU; `None` at a clean end of stream. Bytes that are not RDP are an
    /// error. Cancel-safe: bytes read stay in the buffer.
    pub async fn next<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> std::io::Result<Option<Bytes>> {
        loop {
            match frame_len(&self.buf) {
                Ok(Some(n)) if self.buf.len() >= n => return Ok(Some(self.buf.split_to(n).freeze())),
                Ok(_) => {}
                Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            }
            self.buf.reserve(16 * 1024);
            if r.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the stream ended inside a PDU"))
                };
            }
        }
    }

    /// Bytes read past the PDUs returned (the client may pipeline its TLS handshake).
    pub fn into_rest(self) -> BytesMut {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pdus_come_whole_from_any_chunking() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&[0x03, 0x00, 0x00, 0x08, 1, 2, 3, 4]);
        wire.extend_from_slice(&[0x00, 0x04, 9, 9]);
        wire.extend_from_slice(&[0x03, 0x00, 0x00, 0x07, 5, 6, 7]);
        for split in 1..wire.len() {
            let (a, b) = wire.split_at(split);
            let mut r = tokio_test_reader(a, b);
            let mut f = FrameReader::default();
            let mut got = Vec::new();
            while let Some(p) = f.next(&mut r).await.unwrap() {
                got.push(p.to_vec());
            }
            assert_eq!(got.len(), 3, "split at {split}");
            assert_eq!(got[1], vec![0x00, 0x04, 9, 9]);
        }
    }

    #[tokio::test]
    async fn garbage_is_an_error() {
        let mut r: &[u8] = b"GET / HTTP/1.1\r\n";
        assert!(FrameReader::default().next(&mut r).await.is_err());
    }

    fn tokio_test_reader(a: &[u8], b: &[u8]) -> impl AsyncRead + Unpin {
        let first: &[u8] = Box::leak(a.to_vec().into_boxed_slice());
        let second: &[u8] = Box::leak(b.to_vec().into_boxed_slice());
        AsyncReadExt::chain(first, second)
    }
}
