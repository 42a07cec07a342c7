//! Content policy (R-SES-10): rules on what a user types (command lines), what the target
//! shows (output lines) and which files move, each a regular expression with an action — log,
//! alert or terminate. Pure: the proxies feed bytes in and act on the hits.
//!
//! Command lines are reconstructed from the keystrokes with the usual line editing (backspace,
//! Ctrl-U, Ctrl-W, cursor left/right, Home/End, Delete); when a line was completed by the shell
//! (Tab) or recalled from history (arrow keys), the keystrokes do not say what it holds, and
//! the echoed line is used instead, with the prompt cut off.

mod run;

use regex::bytes::{Regex, RegexBuilder};

use crate::ValidationError;
use run::Run;

/// One content rule as an administrator writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct ContentRuleSpec {
    /// What it watches: `command` (typed command lines and exec commands), `output` (lines the
    /// target shows) or `file` (names of files transferred by SCP or SFTP).
    pub on: String,
    /// A regular expression searched for in each line (use `^…$` to match whole lines).
    pub pattern: String,
    /// `log` (recorded and audited), `alert` (audited as an alert, mailed to Security Policy
    /// Administrators, forwarded to the SIEM) or `terminate` (the session ends; a typed command
    /// never reaches the target).
    pub action: String,
    /// Shown in alerts and to a user whose session it ends; absent: the pattern.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Log,
    Alert,
    Terminate,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Log => "log",
            Action::Alert => "alert",
            Action::Terminate => "terminate",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum On {
    Command,
    Output,
    File,
}

impl On {
    pub fn as_str(self) -> &'static str {
        match self {
            On::Command => "command",
            On::Output => "output",
            On::File => "file",
        }
    }
}

/// The most rules one policy may have, and the longest line examined.
pub const MAX_RULES: usize = 64;
pub const MAX_LINE: usize = 4096;

#[derive(Debug, Clone)]
struct Rule {
    name: String,
    action: Action,
}

#[derive(Debug, Clone)]
struct Set {
    /// "Does any rule match?" in as few passes as possible: the rules whose patterns start
    /// with literals of three bytes or more, as one alternation (one pass, one prefilter over
    /// all their literals: measured three times faster than each alone), and the others each
    /// alone (each with whatever prefilter it has, and a run of bytes it needs where it has
    /// one: a card-number rule skips any text without 13 digits in a row).
    any: Vec<(Option<Run>, Regex)>,
    /// One regular expression per rule. Not a `RegexSet`: each pattern alone gets its own
    /// literal prefilter and skips most text, while a set runs one automaton over every byte
    /// (measured about six times slower on plain text with the benchmark's ten output rules;
    /// one alternation of all patterns and an Aho-Corasick prefilter of their literals were
    /// slower too). Byte regexes: output is searched as it came, without a UTF-8 check or
    /// copy; the patterns keep their Unicode meaning on UTF-8 text.
    regexes: Vec<Regex>,
    rules: Vec<Rule>,
}

impl Set {
    fn new(regexes: Vec<Regex>, rules: Vec<Rule>) -> Set {
        let (led, alone): (Vec<&Regex>, Vec<&Regex>) = regexes.iter().partition(|r| literal_led(r.as_str()));
        let mut any: Vec<(Option<Run>, Regex)> = alone.into_iter().map(|r| (Run::of(r.as_str()), r.clone())).collect();
        let joined = led.iter().map(|r| format!("(?:{})", r.as_str())).collect::<Vec<_>>().join("|");
        match led.len() {
            0 => {}
            1 => any.push((None, led[0].clone())),
            _ => match RegexBuilder::new(&joined).multi_line(true).crlf(true).size_limit(1 << 22).build() {
                Ok(group) => any.push((None, group)),
                Err(_) => any.extend(led.into_iter().map(|r| (None, r.clone()))),
            },
        }
        Set { any, regexes, rules }
    }

    fn any(&self, text: &[u8]) -> bool {
        self.any.iter().any(|(run, r)| run.as_ref().is_none_or(|run| run.in_text(text)) && r.is_match(text))
    }

    /// The most severe rule that matches.
    fn most_severe(&self, text: &[u8]) -> Option<&Rule> {
        self.regexes
            .iter()
            .zip(&self.rules)
            .filter(|(r, _)| r.is_match(text))
            .map(|(_, rule)| rule)
            .max_by_key(|r| r.action)
    }
}

/// A policy's compiled content rules.
#[derive(Debug, Clone, Default)]
pub struct ContentRules {
    command: Option<Set>,
    output: Option<Set>,
    file: Option<Set>,
}

/// A rule that matched: the most severe one when several did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub rule: String,
    pub action: Action,
    pub on: On,
    /// The line (at most [`MAX_LINE`] bytes) it matched in.
    pub text: String,
}

/// Validates and compiles content rules. Errors name the field (`content[2].pattern`).
pub fn compile(specs: &[ContentRuleSpec]) -> Result<ContentRules, ValidationError> {
    if specs.len() > MAX_RULES {
        return Err(ValidationError::new("content", format!("at most {MAX_RULES} rules (found {})", specs.len())));
    }
    let mut groups: [(On, Vec<Regex>, Vec<Rule>); 3] =
        [(On::Command, vec![], vec![]), (On::Output, vec![], vec![]), (On::File, vec![], vec![])];
    for (i, r) in specs.iter().enumerate() {
        let on = match r.on.as_str() {
            "command" => 0,
            "output" => 1,
            "file" => 2,
            other => {
                return Err(ValidationError::new(
                    format!("content[{i}].on"),
                    format!("'{other}' is not command, output or file"),
                ))
            }
        };
        let action = match r.action.as_str() {
            "log" => Action::Log,
            "alert" => Action::Alert,
            "terminate" => Action::Terminate,
            other => {
                return Err(ValidationError::new(
                    format!("content[{i}].action"),
                    format!("'{other}' is not log, alert or terminate"),
                ))
            }
        };
        if r.pattern.is_empty() || r.pattern.len() > 1024 {
            return Err(ValidationError::new(format!("content[{i}].pattern"), "1 to 1024 characters"));
        }
        // Multi-line: `^` and `$` match at line boundaries, so many lines are tested at once.
        // CRLF: a line may end with `\r\n` (terminal output), and `$` still matches before it.
        let regex =
            RegexBuilder::new(&r.pattern).multi_line(true).crlf(true).size_limit(1 << 20).build().map_err(|e| {
                let why = e.to_string();
                let last = why.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("").trim().to_owned();
                ValidationError::new(format!("content[{i}].pattern"), format!("not a valid regular expression: {last}"))
            })?;
        if let Some(n) = &r.name {
            crate::validate::name(&format!("content[{i}].name"), n)?;
        }
        let name = r.name.clone().unwrap_or_else(|| r.pattern.clone());
        groups[on].1.push(regex);
        groups[on].2.push(Rule { name, action });
    }
    let mut out = ContentRules::default();
    for (on, regexes, rules) in groups {
        if regexes.is_empty() {
            continue;
        }
        let slot = match on {
            On::Command => &mut out.command,
            On::Output => &mut out.output,
            On::File => &mut out.file,
        };
        *slot = Some(Set::new(regexes, rules));
    }
    Ok(out)
}

impl ContentRules {
    pub fn is_empty(&self) -> bool {
        self.command.is_none() && self.output.is_none() && self.file.is_none()
    }

    pub fn watches(&self, on: On) -> bool {
        match on {
            On::Command => self.command.is_some(),
            On::Output => self.output.is_some(),
            On::File => self.file.is_some(),
        }
    }

    /// The most severe hit in any of `lines` (each ending with `\n`, possibly `\r\n`): one
    /// pass over all of them, and line by line only when something matched.
    pub fn check_lines(&self, on: On, lines: &[u8]) -> Option<Hit> {
        let set = self.set(on)?;
        if !set.any(lines) {
            return None;
        }
        lines
            .split(|&b| b == b'\n')
            .filter_map(|l| self.check(on, &String::from_utf8_lossy(l.strip_suffix(b"\r").unwrap_or(l))))
            .max_by_key(|h| h.action)
    }

    fn set(&self, on: On) -> Option<&Set> {
        match on {
            On::Command => self.command.as_ref(),
            On::Output => self.output.as_ref(),
            On::File => self.file.as_ref(),
        }
    }

    /// The most severe rule of kind `on` that matches `text`, if any.
    pub fn check(&self, on: On, text: &str) -> Option<Hit> {
        let set = self.set(on)?;
        let text = cut(text);
        // Most lines match nothing: the cheaper question first.
        if !set.any(text.as_bytes()) {
            return None;
        }
        let rule = set.most_severe(text.as_bytes())?;
        Some(Hit { rule: rule.name.clone(), action: rule.action, on, text: text.to_owned() })
    }
}

/// Does every match of `pattern` start with one of a few literals of three bytes or more?
fn literal_led(pattern: &str) -> bool {
    use regex_syntax::hir::literal::Extractor;
    let Ok(hir) = regex_syntax::ParserBuilder::new().multi_line(true).crlf(true).build().parse(pattern) else {
        return false;
    };
    let mut prefixes = Extractor::new().extract(&hir);
    prefixes.optimize_for_prefix_by_preference();
    prefixes.len().is_some_and(|n| (1..=64).contains(&n)) && prefixes.min_literal_len().is_some_and(|n| n >= 3)
}

fn cut(text: &str) -> &str {
    if text.len() <= MAX_LINE {
        return text;
    }
    let mut end = MAX_LINE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Reconstructs typed command lines from keystrokes (and, where keystrokes cannot tell, the
/// echo).
#[derive(Debug, Default)]
pub struct LineEditor {
    line: Vec<char>,
    cursor: usize,
    /// Inside an escape sequence: the bytes after ESC so far.
    escape: Option<Vec<u8>>,
    /// A partial UTF-8 character.
    pending: Vec<u8>,
    /// The line was completed or recalled by the target (Tab, history).
    uncertain: bool,
    echo: EchoLine,
}

impl LineEditor {
    /// Keystrokes from the client; returns the command lines they complete.
    pub fn input(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut done = Vec::new();
        for &b in bytes {
            if let Some(seq) = &mut self.escape {
                seq.push(b);
                // CSI sequences end with a letter or `~`; `ESC x` (Alt-x) is two bytes.
                let finished = (seq.len() == 1 && b != b'[' && b != b'O')
                    || (seq.len() > 1 && (b.is_ascii_alphabetic() || b == b'~'))
                    || seq.len() > 16;
                if finished {
                    let seq = self.escape.take().unwrap_or_default();
                    self.escape_sequence(&seq);
                }
                continue;
            }
            match b {
                b'\r' | b'\n' => {
                    if let Some(line) = self.finish() {
                        done.push(line);
                    }
                }
                0x1b => self.escape = Some(Vec::new()),
                0x7f | 0x08 => {
                    if self.cursor > 0 {
                        self.cursor -= 1;
                        self.line.remove(self.cursor);
                    }
                }
                0x15 => {
                    // Ctrl-U: delete to the start of the line.
                    self.line.drain(..self.cursor);
                    self.cursor = 0;
                }
                0x17 => {
                    // Ctrl-W: delete the word before the cursor.
                    let mut start = self.cursor;
                    while start > 0 && self.line[start - 1] == ' ' {
                        start -= 1;
                    }
                    while start > 0 && self.line[start - 1] != ' ' {
                        start -= 1;
                    }
                    self.line.drain(start..self.cursor);
                    self.cursor = start;
                }
                0x01 => self.cursor = 0,                                      // Ctrl-A
                0x05 => self.cursor = self.line.len(),                        // Ctrl-E
                0x02 => self.cursor = self.cursor.saturating_sub(1),          // Ctrl-B
                0x06 => self.cursor = (self.cursor + 1).min(self.line.len()), // Ctrl-F
                0x03 => self.clear(),                                         // Ctrl-C abandons the line
                0x09 | 0x10 | 0x0e | 0x12 => self.uncertain = true,           // Tab, Ctrl-P/N/R
                b if b < 0x20 => {}
                b => {
                    self.pending.push(b);
                    if let Ok(s) = std::str::from_utf8(&self.pending) {
                        let chars: Vec<char> = s.chars().collect();
                        self.pending.clear();
                        for c in chars {
                            if self.line.len() < MAX_LINE {
                                self.line.insert(self.cursor, c);
                                self.cursor += 1;
                            }
                        }
                    } else if self.pending.len() >= 4 {
                        self.pending.clear();
                    }
                }
            }
        }
        done
    }

    /// What the target echoes, for lines the keystrokes cannot tell.
    pub fn output(&mut self, bytes: &[u8]) {
        self.echo.feed(bytes);
    }

    fn escape_sequence(&mut self, seq: &[u8]) {
        match seq {
            b"[D" | b"OD" => self.cursor = self.cursor.saturating_sub(1),
            b"[C" | b"OC" => self.cursor = (self.cursor + 1).min(self.line.len()),
            b"[H" | b"OH" | b"[1~" => self.cursor = 0,
            b"[F" | b"OF" | b"[4~" => self.cursor = self.line.len(),
            b"[3~" if self.cursor < self.line.len() => {
                self.line.remove(self.cursor);
            }
            b"[A" | b"OA" | b"[B" | b"OB" => self.uncertain = true,
            _ => {}
        }
    }

    fn clear(&mut self) {
        self.line.clear();
        self.cursor = 0;
        self.uncertain = false;
        self.echo.clear();
    }

    fn finish(&mut self) -> Option<String> {
        let typed: String = self.line.iter().collect();
        let line = if self.uncertain { self.echo.command().unwrap_or(typed) } else { typed };
        self.clear();
        let line = line.trim().to_owned();
        (!line.is_empty()).then_some(line)
    }
}

/// The line the terminal shows last (escape sequences removed), to read a recalled or
/// completed command back from the echo.
#[derive(Debug, Default)]
struct EchoLine {
    text: String,
    escape: bool,
}

impl EchoLine {
    fn feed(&mut self, bytes: &[u8]) {
        for c in String::from_utf8_lossy(bytes).chars() {
            if self.escape {
                if c.is_ascii_alphabetic() || c == '~' {
                    self.escape = false;
                }
                continue;
            }
            match c {
                '\u{1b}' => self.escape = true,
                '\n' => self.text.clear(),
                '\r' => {}
                '\u{8}' => {
                    self.text.pop();
                }
                c if c.is_control() => {}
                c if self.text.len() < MAX_LINE => self.text.push(c),
                _ => {}
            }
        }
    }

    fn clear(&mut self) {
        self.text.clear();
    }

    /// The echoed line after the prompt (`$ `, `# `, `> `, `% `).
    fn command(&self) -> Option<String> {
        let at = ["$ ", "# ", "> ", "% "].iter().filter_map(|p| self.text.rfind(p).map(|i| i + p.len())).max()?;
        Some(self.text[at..].to_owned())
    }
}

/// Splits output into lines for the output rules, escape sequences and control characters
/// removed; a line longer than [`MAX_LINE`] is examined in pieces. Works on bytes (a UTF-8
/// character split across chunks stays whole in the line buffer), one pass, no allocation per
/// chunk.
#[derive(Debug, Default)]
pub struct OutputLines {
    line: Vec<u8>,
    /// 0: text, 1: after ESC, 2: inside CSI, 3: inside OSC (ends with BEL or ESC \).
    escape: u8,
}

impl OutputLines {
    /// Feeds output; calls `check` with the completed lines as one text (lines end with `\n`,
    /// possibly `\r\n`), if any (twice when a line was pending from the last chunk). Plain
    /// text (no escape sequences or control characters but line ends) is passed as it came,
    /// without a copy; a pending line, and anything else, goes through [`OutputLines::feed`].
    pub fn feed_lines(&mut self, bytes: &[u8], mut check: impl FnMut(&[u8])) {
        let mut rest = bytes;
        let mut joined = Vec::new();
        if !self.line.is_empty() || self.escape != 0 {
            // The line the last chunk left unfinished, completed on its own.
            let head = match memchr::memchr(b'\n', rest) {
                Some(i) => i + 1,
                None => rest.len(),
            };
            self.feed(&rest[..head], |l| push_line(&mut joined, l));
            rest = &rest[head..];
        }
        if self.line.is_empty() && self.escape == 0 && is_plain(rest) {
            if !joined.is_empty() {
                check(&joined);
                joined.clear();
            }
            let done = memchr::memrchr(b'\n', rest).map_or(0, |i| i + 1);
            if done > 0 {
                check(&rest[..done]);
            }
            rest = &rest[done..];
        }
        self.feed(rest, |l| push_line(&mut joined, l));
        if !joined.is_empty() {
            check(&joined);
        }
    }

    /// Feeds output; calls `each` with every completed line.
    pub fn feed(&mut self, bytes: &[u8], mut each: impl FnMut(&str)) {
        let mut rest = bytes;
        while let Some((&b, tail)) = rest.split_first() {
            if self.escape == 0 {
                // The common case: a run of plain text, copied at once.
                let run = rest.iter().position(|&b| b < 0x20 || b == 0x7f || b == 0x1b).unwrap_or(rest.len());
                if run > 0 {
                    let room = MAX_LINE - self.line.len();
                    let take = run.min(room);
                    self.line.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                    if self.line.len() >= MAX_LINE {
                        self.emit(&mut each);
                    }
                    continue;
                }
            }
            rest = tail;
            match (self.escape, b) {
                (0, 0x1b) => self.escape = 1,
                (1, b'[') => self.escape = 2,
                (1, b']') => self.escape = 3,
                (1, _) => self.escape = 0,
                (2, b) if b.is_ascii_alphabetic() || b == b'~' || b == b'@' => self.escape = 0,
                (2, _) => {}
                (3, 0x07) => self.escape = 0,
                (3, 0x1b) => self.escape = 1,
                (3, _) => {}
                (_, b'\n') => self.emit(&mut each),
                (_, b) if b < 0x20 || b == 0x7f => {}
                (_, b) => {
                    self.line.push(b);
                    if self.line.len() >= MAX_LINE {
                        self.emit(&mut each);
                    }
                }
            }
        }
    }

    fn emit(&mut self, each: &mut impl FnMut(&str)) {
        if !self.line.is_empty() {
            each(&String::from_utf8_lossy(&self.line));
            self.line.clear();
        }
    }
}

/// No escape sequences or control characters but line ends. Branch-free over 64-byte blocks
/// (vectorized), so it costs a fraction of a nanosecond per byte.
fn is_plain(bytes: &[u8]) -> bool {
    bytes
        .chunks(64)
        .all(|block| block.iter().fold(true, |ok, &b| ok & (((b >= 0x20) & (b != 0x7f)) | (b == b'\n') | (b == b'\r'))))
}

fn push_line(out: &mut Vec<u8>, line: &str) {
    out.extend_from_slice(line.as_bytes());
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_escaped_output_give_the_same_lines() {
        let mut seen = Vec::new();
        let mut o = OutputLines::default();
        for chunk in [&b"alpha\r\nbeta\ngam"[..], b"ma\n\x1b[1mdelta\x1b[0m\n", b"plain\nend"] {
            o.feed_lines(chunk, |t| seen.push(String::from_utf8_lossy(t).into_owned()));
        }
        let all: Vec<String> =
            seen.concat().split('\n').map(|l| l.trim_end_matches('\r').to_owned()).filter(|l| !l.is_empty()).collect();
        assert_eq!(all, ["alpha", "beta", "gamma", "delta", "plain"]);
        let r = rules(r#"[{ "on": "output", "pattern": "^beta$", "action": "alert" }]"#);
        assert!(r.check_lines(On::Output, b"alpha\r\nbeta\r\n").is_some(), "$ matches before CR LF");
    }

    #[test]
    fn any_split_of_the_output_gives_the_same_lines() {
        let text = b"one\r\ntwo \x1b[1mbold\x1b[0m\nthree\x1b]0;t\x07\nfour\nfi";
        let lines = |chunks: &[&[u8]]| {
            let mut o = OutputLines::default();
            let mut all = Vec::new();
            for c in chunks {
                o.feed_lines(c, |t| all.extend_from_slice(t));
            }
            String::from_utf8(all).unwrap().replace('\r', "")
        };
        let whole = lines(&[text]);
        assert_eq!(whole, "one\ntwo bold\nthree\nfour\n");
        for a in 0..text.len() {
            for b in a..text.len() {
                assert_eq!(lines(&[&text[..a], &text[a..b], &text[b..]]), whole, "split at {a} and {b}");
            }
        }
    }

    #[test]
    fn literal_led_rules_are_searched_together_and_the_rest_alone() {
        assert!(literal_led("BEGIN (RSA|OPENSSH) PRIVATE KEY"));
        assert!(literal_led("(?i)password\\s*[:=]"));
        assert!(literal_led("^root:[^:]*:0:0:"));
        assert!(!literal_led("\\b4[0-9]{12}"), "a one-byte literal is no prefilter");
        assert!(!literal_led(".*secret"));
        let r = rules(
            r#"[{"on":"output","pattern":"AKIA[0-9A-Z]{16}","action":"alert"},
                {"on":"output","pattern":"(?i)segmentation fault","action":"log"},
                {"on":"output","pattern":"\\b4[0-9]{12}\\b","action":"terminate"}]"#,
        );
        assert_eq!(r.output.as_ref().unwrap().any.len(), 2, "one alternation and one alone");
        for (text, action) in [
            ("key AKIAABCDEFGHIJKLMNOP here", Action::Alert),
            ("Segmentation Fault (core dumped)", Action::Log),
            ("card 4111111111111 end", Action::Terminate),
        ] {
            assert_eq!(r.check_lines(On::Output, format!("ok\n{text}\n").as_bytes()).unwrap().action, action, "{text}");
        }
        assert!(r.check_lines(On::Output, b"4111 AKIA segmentation\n").is_none());
    }

    fn rules(json: &str) -> ContentRules {
        compile(&serde_json::from_str::<Vec<ContentRuleSpec>>(json).unwrap()).unwrap()
    }

    #[test]
    fn typed_lines_with_editing() {
        let mut e = LineEditor::default();
        assert_eq!(e.input(b"rm -rf /tmpX\x7f/x\r"), vec!["rm -rf /tmp/x"]);
        // Cursor left, insert; Ctrl-W; Ctrl-U.
        assert_eq!(e.input(b"ech \x1b[Do hi\r"), vec!["echo hi"]);
        assert_eq!(e.input(b"sudo rm foo\x17bar\r"), vec!["sudo rm bar"]);
        assert_eq!(e.input(b"garbage\x15ls\r"), vec!["ls"]);
        // Split across chunks, multibyte, Home and Delete.
        assert_eq!(e.input("xcafé".as_bytes()), Vec::<String>::new());
        assert_eq!(e.input(b"\x1b[H\x1b[3~\n"), vec!["café"]);
        // Ctrl-C abandons; an empty line is nothing.
        assert_eq!(e.input(b"shutdown\x03\r\r"), Vec::<String>::new());
    }

    #[test]
    fn recalled_lines_come_from_the_echo() {
        let mut e = LineEditor::default();
        e.output(b"\x1b[01;32muser@host\x1b[00m:~$ ");
        assert!(e.input(b"\x1b[A").is_empty());
        e.output(b"shutdown -h now");
        assert_eq!(e.input(b"\r"), vec!["shutdown -h now"]);
        e.output(b"\r\nuser@host:~$ ");
        // The target echoes what is typed, and completes it.
        assert!(e.input(b"syst\t").is_empty());
        e.output(b"syst");
        e.output(b"emctl ");
        assert!(e.input(b"stop").is_empty());
        e.output(b"stop");
        assert_eq!(e.input(b"\r"), vec!["systemctl stop"]);
    }

    #[test]
    fn rules_match_and_the_most_severe_wins() {
        let r = rules(
            r#"[{"on":"command","pattern":"^rm ","action":"log"},
                {"on":"command","pattern":"rm -rf /$","action":"terminate","name":"wipe"},
                {"on":"output","pattern":"BEGIN (RSA|OPENSSH) PRIVATE KEY","action":"alert"},
                {"on":"file","pattern":"\\.kdbx$","action":"alert"}]"#,
        );
        assert_eq!(r.check(On::Command, "rm foo").unwrap().action, Action::Log);
        let hit = r.check(On::Command, "rm -rf /").unwrap();
        assert_eq!((hit.action, hit.rule.as_str()), (Action::Terminate, "wipe"));
        assert!(r.check(On::Command, "ls").is_none());
        assert_eq!(r.check(On::Output, "-----BEGIN OPENSSH PRIVATE KEY-----").unwrap().action, Action::Alert);
        assert!(r.check(On::File, "/home/x/vault.kdbx").is_some());
        assert!(r.check(On::File, "/home/x/notes.txt").is_none());
        let many = "ok\n-----BEGIN RSA PRIVATE KEY-----\nfine";
        assert_eq!(r.check_lines(On::Output, many.as_bytes()).unwrap().text, "-----BEGIN RSA PRIVATE KEY-----");
        assert!(r.check_lines(On::Output, b"ok\nfine").is_none());
        // Anchors hold per line.
        assert_eq!(r.check_lines(On::Command, b"ls\nrm -rf /\nls").unwrap().action, Action::Terminate);
    }

    #[test]
    fn output_lines_without_escapes_across_chunks() {
        let mut o = OutputLines::default();
        let mut lines = Vec::new();
        o.feed(b"\x1b[1mbold\x1b[0m te", |l| lines.push(l.to_owned()));
        o.feed("xt é\r\nnext\x1b]0;title\x07 line\n".as_bytes(), |l| lines.push(l.to_owned()));
        // A multibyte character split across chunks.
        let bytes = "añb\n".as_bytes();
        o.feed(&bytes[..2], |l| lines.push(l.to_owned()));
        o.feed(&bytes[2..], |l| lines.push(l.to_owned()));
        assert_eq!(lines, vec!["bold text é", "next line", "añb"]);
    }

    #[test]
    fn bad_rules_name_their_field() {
        let err = |j: &str| compile(&serde_json::from_str::<Vec<ContentRuleSpec>>(j).unwrap()).unwrap_err().field;
        assert_eq!(err(r#"[{"on":"screen","pattern":"x","action":"log"}]"#), "content[0].on");
        assert_eq!(err(r#"[{"on":"output","pattern":"x","action":"explode"}]"#), "content[0].action");
        assert_eq!(err(r#"[{"on":"output","pattern":"(","action":"log"}]"#), "content[0].pattern");
        assert_eq!(err(r#"[{"on":"output","pattern":"","action":"log"}]"#), "content[0].pattern");
    }
}
