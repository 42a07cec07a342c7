//! Property tests (fuzzing) of what reads session traffic for the content policy, and of the
//! connection-policy compiler: any bytes, no panic, lines bounded; plain typed text comes back
//! as typed; any JSON policy either compiles or names a field.

use portcullis_core::content::{LineEditor, OutputLines, MAX_LINE};
use portcullis_core::gateway::{compile, ConnectionPolicySpec};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn keystrokes_and_echo_never_panic(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..8)) {
        let mut editor = LineEditor::default();
        let mut output = OutputLines::default();
        for c in &chunks {
            for line in editor.input(c) {
                prop_assert!(line.len() <= MAX_LINE * 4);
            }
            editor.output(c);
            output.feed(c, |line| assert!(line.len() <= MAX_LINE * 3));
        }
    }

    #[test]
    fn plain_typed_lines_come_back(words in prop::collection::vec("[a-zA-Z0-9/._-]{1,12}", 1..8), split in 0usize..40) {
        let line = words.join(" ");
        let typed = format!("{line}\r");
        let (a, b) = typed.as_bytes().split_at(split.min(typed.len()));
        let mut editor = LineEditor::default();
        let mut done = editor.input(a);
        done.extend(editor.input(b));
        prop_assert_eq!(done, vec![line]);
    }

    #[test]
    fn any_policy_compiles_or_names_a_field(json in r#"\{"protocol":"(ssh|telnet|rdp|x)"(,"clients":\["[0-9./:a-f]{0,20}"\])?(,"channels":\[\{"kind":"[a-z_]{0,14}"(,"commands":\["[^"\\]{0,10}"\])?\}\])?(,"content":\[\{"on":"[a-z]{0,8}","pattern":"[^"\\]{0,12}","action":"[a-z]{0,9}"\}\])?\}"#) {
        if let Ok(spec) = serde_json::from_str::<ConnectionPolicySpec>(&json) {
            if let Err(e) = compile("p", "p", &spec) {
                prop_assert!(!e.field.is_empty() && !e.message.is_empty());
            }
        }
    }
}
