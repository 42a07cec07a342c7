//! The client's side of a Telnet connection: the proxy as a Telnet server (it echoes, so that
//! passwords are not shown; it asks for the terminal type and window size), and the lines of
//! its own login dialogue.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Mutex;

use super::codec::{self, opt, Decoder, Item, Line, LineReader, Options, TTYPE_IS, TTYPE_SEND};

/// What the proxy performs for the client, and lets the client perform.
const US: &[u8] = &[opt::ECHO, opt::SGA];
const HIM: &[u8] = &[opt::SGA, opt::NAWS, opt::TTYPE];

/// The longest terminal type name kept.
const MAX_TERM: usize = 40;

/// Decoded input from the client.
#[derive(Default)]
pub(super) struct Input {
    pub data: Vec<u8>,
    /// The client's window changed size (columns, rows).
    pub resized: Option<(u16, u16)>,
    /// Telnet commands to pass on (interrupt process, break, ...).
    pub commands: Vec<u8>,
}

pub(super) struct ClientLeg {
    pub read: OwnedReadHalf,
    pub write: Arc<Mutex<OwnedWriteHalf>>,
    decoder: Decoder,
    options: Options,
    pub term: String,
    pub size: (u16, u16),
    lines: LineReader,
    /// Data read but not consumed by the login dialogue (typed ahead).
    pub pending: Vec<u8>,
    pub buf: Vec<u8>,
}

impl ClientLeg {
    pub fn new(read: OwnedReadHalf, write: OwnedWriteHalf) -> ClientLeg {
        ClientLeg {
            read,
            write: Arc::new(Mutex::new(write)),
            decoder: Decoder::default(),
            options: Options::new(US, HIM),
            term: "vt100".into(),
            size: (80, 24),
            lines: LineReader::default(),
            pending: Vec::new(),
            buf: vec![0; 16 * 1024],
        }
    }

    /// The proxy's opening negotiation: it echoes and suppresses go-ahead, and asks for the
    /// terminal type and window size.
    pub async fn start(&mut self) -> std::io::Result<()> {
        let mut out = Vec::new();
        let o = &mut self.options;
        for ask in [o.offer(opt::ECHO), o.offer(opt::SGA), o.ask(opt::SGA), o.ask(opt::NAWS), o.ask(opt::TTYPE)] {
            out.extend(ask.into_iter().flatten());
        }
        self.send(&out).await
    }

    pub async fn send(&self, bytes: &[u8]) -> std::io::Result<()> {
        self.write.lock().await.write_all(bytes).await
    }

    /// Shows `text` (lines end with CR LF on the wire).
    pub async fn say(&self, text: &str) -> std::io::Result<()> {
        let wire = text.replace("\r\n", "\n").replace('\n', "\r\n");
        self.send(&codec::escape(wire.as_bytes())).await
    }

    /// The client should echo for itself from now on (the target does not echo).
    pub async fn stop_echo(&mut self) -> std::io::Result<()> {
        match self.options.withdraw(opt::ECHO) {
            Some(m) => self.send(&m).await,
            None => Ok(()),
        }
    }

    /// Decodes `n` bytes read into `buf`: negotiations answered, the rest returned.
    pub async fn absorb(&mut self, n: usize) -> std::io::Result<Input> {
        let mut items = Vec::new();
        self.decoder.feed(&self.buf[..n], &mut items);
        let mut input = Input::default();
        let mut reply = Vec::new();
        for item in items {
            match item {
                Item::Data(d) => input.data.extend(d),
                Item::Negotiate(verb, option) => {
                    let had_ttype = self.options.him(opt::TTYPE);
                    if let Some(answer) = self.options.receive(verb, option) {
                        reply.extend_from_slice(&answer);
                    }
                    if !had_ttype && self.options.him(opt::TTYPE) {
                        reply.extend(codec::subnegotiation(opt::TTYPE, &[TTYPE_SEND]));
                    }
                }
                Item::Sub(opt::NAWS, p) => {
                    if let Some((c, r)) = codec::parse_naws(&p).filter(|(c, r)| *c > 0 && *r > 0) {
                        self.size = (c, r);
                        input.resized = Some((c, r));
                    }
                }
                Item::Sub(opt::TTYPE, p) if p.first() == Some(&TTYPE_IS) => {
                    let name: String = String::from_utf8_lossy(&p[1..])
                        .chars()
                        .filter(|c| c.is_ascii_alphanumeric() || "-_.+".contains(*c))
                        .take(MAX_TERM)
                        .collect();
                    if !name.is_empty() {
                        self.term = name.to_ascii_lowercase();
                    }
                }
                Item::Sub(..) => {}
                Item::Command(c) => input.commands.push(c),
            }
        }
        if !reply.is_empty() {
            self.send(&reply).await?;
        }
        Ok(input)
    }

    /// Reads once; `None` when the client has gone.
    pub async fn read_input(&mut self) -> std::io::Result<Option<Input>> {
        let n = self.read.read(&mut self.buf).await?;
        if n == 0 {
            return Ok(None);
        }
        self.absorb(n).await.map(Some)
    }

    /// Reads a line of the login dialogue, echoing it or not; `None` when the client has gone
    /// or given up.
    pub async fn read_line(&mut self, echo: bool) -> std::io::Result<Option<String>> {
        loop {
            if !self.pending.is_empty() {
                let pending = std::mem::take(&mut self.pending);
                let (shown, line, used) = self.lines.feed(&pending, echo);
                self.pending = pending[used..].to_vec();
                if !shown.is_empty() {
                    self.send(&codec::escape(&shown)).await?;
                }
                match line {
                    Some(Line::Done(l)) => return Ok(Some(l)),
                    Some(Line::Abort) => return Ok(None),
                    None => {}
                }
            }
            match self.read_input().await? {
                None => return Ok(None),
                Some(input) => self.pending.extend(input.data),
            }
        }
    }
}
