//! The Telnet wire format (RFC 854, 855): a bounded decoder that splits a byte stream into data,
//! option negotiations, subnegotiations and commands; the encoder's escaping; the option
//! state of one side of a connection (a simplified RFC 1143 "Q method" that never answers an
//! acknowledgement, so two peers cannot loop); and the line reader of the proxy's own login
//! dialogue. Pure: no I/O, no clock. Fuzzed by the property tests below.

pub const IAC: u8 = 255;
pub const DONT: u8 = 254;
pub const DO: u8 = 253;
pub const WONT: u8 = 252;
pub const WILL: u8 = 251;
pub const SB: u8 = 250;
pub const SE: u8 = 240;

/// Options the proxy knows.
pub mod opt {
    pub const ECHO: u8 = 1;
    pub const SGA: u8 = 3;
    pub const TTYPE: u8 = 24;
    pub const NAWS: u8 = 31;
}

/// TTYPE subnegotiation verbs (RFC 1091).
pub const TTYPE_IS: u8 = 0;
pub const TTYPE_SEND: u8 = 1;

/// The longest subnegotiation kept; a longer one is dropped whole.
pub const MAX_SUB: usize = 512;

/// One unit of a decoded stream, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// Data bytes (IAC IAC undone).
    Data(Vec<u8>),
    /// WILL, WONT, DO or DONT, and the option.
    Negotiate(u8, u8),
    /// A subnegotiation: the option and its payload (at most [`MAX_SUB`] bytes).
    Sub(u8, Vec<u8>),
    /// Any other command (NOP, IP, AO, AYT, BRK, EC, EL, GA, DM).
    Command(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    Data,
    Iac,
    Negotiate(u8),
    SubOption,
    Sub,
    SubIac,
}

/// Decodes a Telnet byte stream fed in chunks of any size; state carries across chunks.
#[derive(Debug, Default)]
pub struct Decoder {
    state: State,
    sub_option: u8,
    sub: Vec<u8>,
    sub_overflow: bool,
}

impl Decoder {
    /// Decodes `input`, appending its items to `out` (consecutive data bytes in one item).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<Item>) {
        let mut data: Vec<u8> = Vec::new();
        let flush = |data: &mut Vec<u8>, out: &mut Vec<Item>| {
            if !data.is_empty() {
                out.push(Item::Data(std::mem::take(data)));
            }
        };
        for &b in input {
            self.state = match self.state {
                State::Data if b == IAC => State::Iac,
                State::Data => {
                    data.push(b);
                    State::Data
                }
                State::Iac => match b {
                    IAC => {
                        data.push(IAC);
                        State::Data
                    }
                    WILL | WONT | DO | DONT => State::Negotiate(b),
                    SB => State::SubOption,
                    other => {
                        flush(&mut data, out);
                        out.push(Item::Command(other));
                        State::Data
                    }
                },
                State::Negotiate(verb) => {
                    flush(&mut data, out);
                    out.push(Item::Negotiate(verb, b));
                    State::Data
                }
                State::SubOption => {
                    self.sub_option = b;
                    self.sub.clear();
                    self.sub_overflow = false;
                    State::Sub
                }
                State::Sub if b == IAC => State::SubIac,
                State::Sub => {
                    self.push_sub(b);
                    State::Sub
                }
                State::SubIac => match b {
                    SE => {
                        if !self.sub_overflow {
                            flush(&mut data, out);
                            out.push(Item::Sub(self.sub_option, std::mem::take(&mut self.sub)));
                        }
                        self.sub.clear();
                        State::Data
                    }
                    IAC => {
                        self.push_sub(IAC);
                        State::Sub
                    }
                    // A broken subnegotiation (IAC followed by anything but SE or IAC): dropped,
                    // and the byte read as the command it starts.
                    _ => {
                        self.sub.clear();
                        self.state = State::Iac;
                        let mut rest = Vec::new();
                        self.feed(&[b], &mut rest);
                        flush(&mut data, out);
                        out.extend(rest);
                        continue;
                    }
                },
            };
        }
        flush(&mut data, out);
    }

    fn push_sub(&mut self, b: u8) {
        if self.sub.len() < MAX_SUB {
            self.sub.push(b);
        } else {
            self.sub_overflow = true;
        }
    }
}

/// `data` with every IAC doubled, ready for the wire.
pub fn escape(data: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !data.contains(&IAC) {
        return std::borrow::Cow::Borrowed(data);
    }
    let mut out = Vec::with_capacity(data.len() + 8);
    for &b in data {
        out.push(b);
        if b == IAC {
            out.push(IAC);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// IAC SB option payload IAC SE, the payload escaped.
pub fn subnegotiation(option: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![IAC, SB, option];
    out.extend_from_slice(&escape(payload));
    out.extend_from_slice(&[IAC, SE]);
    out
}

/// NAWS payload: columns and rows, 16 bits each.
pub fn naws(cols: u16, rows: u16) -> Vec<u8> {
    subnegotiation(opt::NAWS, &[(cols >> 8) as u8, cols as u8, (rows >> 8) as u8, rows as u8])
}

/// Columns and rows from a NAWS payload.
pub fn parse_naws(payload: &[u8]) -> Option<(u16, u16)> {
    match payload {
        [c1, c2, r1, r2] => Some((u16::from_be_bytes([*c1, *c2]), u16::from_be_bytes([*r1, *r2]))),
        _ => None,
    }
}

/// The option state of one side of a connection: which options this side performs (`us`)
/// and which it has agreed the peer performs (`him`), and which it has asked for.
#[derive(Debug, Clone)]
pub struct Options {
    us: [bool; 256],
    him: [bool; 256],
    asked_us: [bool; 256],
    asked_him: [bool; 256],
    /// Options this side agrees to perform, and to let the peer perform.
    accept_us: &'static [u8],
    accept_him: &'static [u8],
}

impl Options {
    pub fn new(accept_us: &'static [u8], accept_him: &'static [u8]) -> Options {
        Options {
            us: [false; 256],
            him: [false; 256],
            asked_us: [false; 256],
            asked_him: [false; 256],
            accept_us,
            accept_him,
        }
    }

    /// Offers to perform `option` (IAC WILL); nothing if already on or asked.
    pub fn offer(&mut self, option: u8) -> Option<[u8; 3]> {
        let o = usize::from(option);
        if self.us[o] || self.asked_us[o] {
            return None;
        }
        self.asked_us[o] = true;
        Some([IAC, WILL, option])
    }

    /// Stops performing `option` (IAC WONT); nothing if already off.
    pub fn withdraw(&mut self, option: u8) -> Option<[u8; 3]> {
        let o = usize::from(option);
        if !self.us[o] && !self.asked_us[o] {
            return None;
        }
        self.us[o] = false;
        self.asked_us[o] = false;
        Some([IAC, WONT, option])
    }

    /// Asks the peer to perform `option` (IAC DO); nothing if already on or asked.
    pub fn ask(&mut self, option: u8) -> Option<[u8; 3]> {
        let o = usize::from(option);
        if self.him[o] || self.asked_him[o] {
            return None;
        }
        self.asked_him[o] = true;
        Some([IAC, DO, option])
    }

    pub fn us(&self, option: u8) -> bool {
        self.us[usize::from(option)]
    }

    pub fn him(&self, option: u8) -> bool {
        self.him[usize::from(option)]
    }

    /// The peer's negotiation; the answer to send, if any. An acknowledgement of a state already
    /// held, or of one this side asked for, is never answered.
    pub fn receive(&mut self, verb: u8, option: u8) -> Option<[u8; 3]> {
        let o = usize::from(option);
        match verb {
            WILL => {
                let asked = std::mem::take(&mut self.asked_him[o]);
                if self.him[o] {
                    None
                } else if self.accept_him.contains(&option) {
                    self.him[o] = true;
                    (!asked).then_some([IAC, DO, option])
                } else {
                    Some([IAC, DONT, option])
                }
            }
            WONT => {
                let asked = std::mem::take(&mut self.asked_him[o]);
                if self.him[o] {
                    self.him[o] = false;
                    Some([IAC, DONT, option])
                } else {
                    let _ = asked;
                    None
                }
            }
            DO => {
                let asked = std::mem::take(&mut self.asked_us[o]);
                if self.us[o] {
                    None
                } else if self.accept_us.contains(&option) {
                    self.us[o] = true;
                    (!asked).then_some([IAC, WILL, option])
                } else {
                    Some([IAC, WONT, option])
                }
            }
            DONT => {
                self.asked_us[o] = false;
                if self.us[o] {
                    self.us[o] = false;
                    Some([IAC, WONT, option])
                } else {
                    None
                }
            }
            _ => None,
        }
    }
}

/// What the line reader of the login dialogue saw.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line (without its end).
    Done(String),
    /// The user gave up (Ctrl-C, Ctrl-D on an empty line).
    Abort,
}

/// Reads one line of the proxy's own login dialogue from decoded data, echoing it (or not:
/// passwords), with backspace; bounded in length.
#[derive(Debug, Default)]
pub struct LineReader {
    line: Vec<u8>,
    /// The last byte was CR: a following LF or NUL belongs to it.
    after_cr: bool,
}

/// The longest line the login dialogue takes (longer input is cut).
pub const MAX_LINE: usize = 256;

impl LineReader {
    /// Feeds data; returns what to echo, the line if one ended, and how many bytes of `data`
    /// were consumed (the rest belongs to what comes after the line).
    pub fn feed(&mut self, data: &[u8], echo: bool) -> (Vec<u8>, Option<Line>, usize) {
        let mut shown = Vec::new();
        for (i, &b) in data.iter().enumerate() {
            let after_cr = std::mem::take(&mut self.after_cr);
            match b {
                b'\n' | 0 if after_cr => {}
                b'\r' | b'\n' => {
                    self.after_cr = b == b'\r';
                    shown.extend_from_slice(b"\r\n");
                    let line = String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
                    // A CR's LF or NUL may come in the same chunk: it is part of this line.
                    let mut used = i + 1;
                    if b == b'\r' && matches!(data.get(used), Some(b'\n' | 0)) {
                        used += 1;
                        self.after_cr = false;
                    }
                    return (shown, Some(Line::Done(line)), used);
                }
                0x03 => return (shown, Some(Line::Abort), i + 1),
                0x04 if self.line.is_empty() => return (shown, Some(Line::Abort), i + 1),
                0x7f | 0x08 => {
                    if self.line.pop().is_some() {
                        // Whole UTF-8 characters: continuation bytes go with their lead.
                        while self.line.last().is_some_and(|c| c & 0xC0 == 0x80) {
                            self.line.pop();
                        }
                        if echo {
                            shown.extend_from_slice(b"\x08 \x08");
                        }
                    }
                }
                0x15 => {
                    // Ctrl-U: the whole line.
                    if echo {
                        for _ in String::from_utf8_lossy(&self.line).chars() {
                            shown.extend_from_slice(b"\x08 \x08");
                        }
                    }
                    self.line.clear();
                }
                b if b < 0x20 => {}
                b => {
                    if self.line.len() < MAX_LINE {
                        self.line.push(b);
                        if echo {
                            shown.push(b);
                        }
                    }
                }
            }
        }
        (shown, None, data.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode(input: &[u8]) -> Vec<Item> {
        let mut out = Vec::new();
        Decoder::default().feed(input, &mut out);
        out
    }

    #[test]
    fn splits_data_negotiation_and_subnegotiation() {
        let input =
            [b"ab".as_slice(), &[IAC, DO, opt::TTYPE, IAC, IAC, b'c', IAC, SB, opt::NAWS, 0, 80, 0, 24, IAC, SE]]
                .concat();
        assert_eq!(
            decode(&input),
            vec![
                Item::Data(b"ab".to_vec()),
                Item::Negotiate(DO, opt::TTYPE),
                Item::Data(vec![IAC, b'c']),
                Item::Sub(opt::NAWS, vec![0, 80, 0, 24]),
            ]
        );
        assert_eq!(parse_naws(&[0, 80, 0, 24]), Some((80, 24)));
        assert_eq!(parse_naws(&[0, 80, 0]), None);
    }

    #[test]
    fn an_overlong_subnegotiation_is_dropped_and_the_stream_goes_on() {
        let mut input = vec![IAC, SB, opt::TTYPE];
        input.extend(std::iter::repeat_n(b'x', MAX_SUB + 10));
        input.extend_from_slice(&[IAC, SE, b'o', b'k']);
        assert_eq!(decode(&input), vec![Item::Data(b"ok".to_vec())]);
    }

    #[test]
    fn answers_never_loop() {
        // Both sides refuse: one answer each, then silence.
        let mut a = Options::new(&[], &[]);
        assert_eq!(a.receive(DO, 5), Some([IAC, WONT, 5]));
        assert_eq!(a.receive(WONT, 5), None);
        // Asked for and granted: no answer to the acknowledgement.
        let mut b = Options::new(&[], &[opt::NAWS]);
        assert_eq!(b.ask(opt::NAWS), Some([IAC, DO, opt::NAWS]));
        assert_eq!(b.ask(opt::NAWS), None);
        assert_eq!(b.receive(WILL, opt::NAWS), None);
        assert!(b.him(opt::NAWS));
        assert_eq!(b.receive(WILL, opt::NAWS), None);
        // Offered and refused.
        let mut c = Options::new(&[opt::ECHO], &[]);
        assert_eq!(c.offer(opt::ECHO), Some([IAC, WILL, opt::ECHO]));
        assert_eq!(c.receive(DONT, opt::ECHO), None);
        assert!(!c.us(opt::ECHO));
        // Unasked and accepted: agreed once.
        assert_eq!(c.receive(DO, opt::ECHO), Some([IAC, WILL, opt::ECHO]));
        assert_eq!(c.receive(DO, opt::ECHO), None);
        assert_eq!(c.withdraw(opt::ECHO), Some([IAC, WONT, opt::ECHO]));
    }

    #[test]
    fn the_line_reader_edits_and_hides() {
        let mut r = LineReader::default();
        let (shown, line, used) = r.feed(b"alx\x7fice\r\0rest", true);
        assert_eq!(line, Some(Line::Done("alice".into())));
        assert_eq!(used, 9);
        assert_eq!(shown, b"alx\x08 \x08ice\r\n");
        let (shown, line, _) = r.feed(b"s3cret\r\n", false);
        assert_eq!(line, Some(Line::Done("s3cret".into())));
        assert_eq!(shown, b"\r\n");
        // A CR's LF in the next chunk is not a second (empty) line.
        let (_, line, _) = r.feed(b"x\r", true);
        assert_eq!(line, Some(Line::Done("x".into())));
        let (_, line, _) = r.feed(b"\ny\r\n", true);
        assert_eq!(line, Some(Line::Done("y".into())));
        assert_eq!(r.feed(b"\x03", true).1, Some(Line::Abort));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Any bytes, in any chunks: no panic, subnegotiations bounded, and the same items
        /// (data joined) whatever the chunking.
        #[test]
        fn decoding_is_bounded_and_chunking_does_not_matter(input in proptest::collection::vec(any::<u8>(), 0..2000), cut in 0usize..2000) {
            let whole = decode(&input);
            let cut = cut.min(input.len());
            let mut d = Decoder::default();
            let mut parts = Vec::new();
            d.feed(&input[..cut], &mut parts);
            d.feed(&input[cut..], &mut parts);
            let join = |items: Vec<Item>| {
                let mut out: Vec<Item> = Vec::new();
                for i in items {
                    match (out.last_mut(), i) {
                        (Some(Item::Data(a)), Item::Data(b)) => a.extend(b),
                        (_, i) => out.push(i),
                    }
                }
                out
            };
            for i in &whole {
                if let Item::Sub(_, p) = i {
                    prop_assert!(p.len() <= MAX_SUB);
                }
            }
            prop_assert_eq!(join(whole), join(parts));
        }

        /// Escaped data decodes to itself.
        #[test]
        fn escaped_data_round_trips(data in proptest::collection::vec(any::<u8>(), 1..1000)) {
            let items = decode(&escape(&data));
            prop_assert_eq!(items, vec![Item::Data(data)]);
        }

        /// Whatever the peer sends, each side answers at most once per change and two such
        /// sides settle: a bounded exchange.
        #[test]
        fn negotiation_settles(seq in proptest::collection::vec((prop_oneof![Just(WILL), Just(WONT), Just(DO), Just(DONT)], 0u8..6), 0..50)) {
            let mut a = Options::new(&[1, 3], &[3, 31]);
            let mut b = Options::new(&[3, 31], &[1]);
            for (verb, option) in seq {
                let mut msg = a.receive(verb, option);
                let mut turns = 0;
                let mut to_b = true;
                while let Some([_, v, o]) = msg {
                    msg = if to_b { b.receive(v, o) } else { a.receive(v, o) };
                    to_b = !to_b;
                    turns += 1;
                    prop_assert!(turns < 4, "negotiation loops");
                }
            }
        }

        /// The line reader takes any bytes without panicking and keeps lines bounded.
        #[test]
        fn line_reader_is_bounded(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut r = LineReader::default();
            let mut rest: &[u8] = &data;
            while !rest.is_empty() {
                let (_, line, used) = r.feed(rest, true);
                if let Some(Line::Done(l)) = line {
                    prop_assert!(l.len() <= MAX_LINE * 3);
                }
                prop_assert!(used >= 1 && used <= rest.len());
                rest = &rest[used..];
            }
        }
    }
}
