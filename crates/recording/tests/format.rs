//! The recording format: round trip, compression, and detection of every kind of tampering.

use portcullis_recording::*;
use proptest::prelude::*;
use std::time::Duration;

async fn write(path: &std::path::Path, id: &str, key: &RecordingKey, events: &[Event], seal: bool) -> WriterStats {
    let mut w = RecordingWriter::create(path, id, key).await.unwrap();
    for (i, e) in events.iter().enumerate() {
        w.push(e);
        if i % 3 == 2 {
            w.flush_chunk(false).await.unwrap();
        }
    }
    if seal {
        w.seal().await.unwrap()
    } else {
        w.flush_chunk(false).await.unwrap();
        WriterStats::default()
    }
}

fn sample() -> Vec<Event> {
    let mut v = vec![Event::pty(0, 0, 120, 40, "xterm-256color"), Event::new(5, EventKind::Shell, 0, vec![])];
    for i in 0..20u64 {
        v.push(Event::new(10 + i * 1000, EventKind::Input, 0, format!("echo line {i}\r")));
        v.push(Event::new(20 + i * 1000, EventKind::Output, 0, format!("line {i}\r\n$ ")));
    }
    v.push(Event::resize(30_000, 0, 100, 30));
    v.push(Event::new(40_000, EventKind::End, 0, "client closed".as_bytes().to_vec()));
    v
}

#[tokio::test]
async fn round_trip_and_asciicast() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r");
    let key = new_key();
    let events = sample();
    let stats = write(&path, "sess-1", &key, &events, true).await;
    assert_eq!(stats.events, events.len() as u64);
    let back: Vec<Event> = Reader::open(&path, "sess-1", &key).unwrap().map(Result::unwrap).collect();
    assert_eq!(back, events);
    let report = verify(&path, "sess-1", &key).unwrap();
    assert_eq!((report.events, report.chunks), (events.len() as u64, stats.chunks));

    let mut out = Vec::new();
    let lines = export_asciicast(Reader::open(&path, "sess-1", &key).unwrap(), 1_700_000_000, &mut out).unwrap();
    assert_eq!(lines, 40);
    let text = String::from_utf8(out).unwrap();
    let header: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(
        (header["version"].as_i64(), header["width"].as_i64(), header["height"].as_i64()),
        (Some(2), Some(120), Some(40))
    );
    assert!(text.contains(r#""line 7\r\n$ ""#), "{text}");

    // The plaintext is not in the file.
    let raw = std::fs::read(&path).unwrap();
    assert!(!raw.windows(6).any(|w| w == b"line 7"));
}

#[tokio::test]
async fn tampering_is_detected_at_the_right_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r");
    let key = new_key();
    write(&path, "sess-2", &key, &sample(), true).await;
    let good = std::fs::read(&path).unwrap();
    let header = 7 + "sess-2".len();
    // Chunk boundaries.
    let mut bounds = vec![header];
    let mut pos = header;
    while pos < good.len() {
        let len = u32::from_be_bytes(good[pos..pos + 4].try_into().unwrap()) as usize;
        pos += 4 + len;
        bounds.push(pos);
    }
    assert!(bounds.len() > 4, "several chunks expected");
    let check = |bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        verify(&path, "sess-2", &key)
    };

    // One changed byte in chunk 2.
    let mut bad = good.clone();
    bad[bounds[2] + 10] ^= 1;
    assert!(matches!(check(&bad), Err(RecordingError::Tampered(2))), "{:?}", check(&bad));
    // Chunk 1 removed.
    let bad = [&good[..bounds[1]], &good[bounds[2]..]].concat();
    assert!(matches!(check(&bad), Err(RecordingError::Tampered(1))));
    // Chunks 1 and 2 swapped.
    let bad =
        [&good[..bounds[1]], &good[bounds[2]..bounds[3]], &good[bounds[1]..bounds[2]], &good[bounds[3]..]].concat();
    assert!(matches!(check(&bad), Err(RecordingError::Tampered(1))));
    // The final chunk cut off.
    let n = bounds.len() - 2;
    let bad = &good[..bounds[n]];
    assert!(matches!(check(bad), Err(RecordingError::NotSealed(_))), "{:?}", check(bad));
    // Cut in the middle of a chunk.
    assert!(matches!(check(&good[..bounds[2] + 7]), Err(RecordingError::NotSealed(2))));
    // Bytes appended.
    let bad = [&good[..], b"x"].concat();
    assert!(matches!(check(&bad), Err(RecordingError::TrailingData(_))));
    // Flags flipped (e.g. "final" set early).
    let mut bad = good.clone();
    bad[bounds[1] + 4] |= 1;
    assert!(matches!(check(&bad), Err(RecordingError::Tampered(1))));
    // Another session's id, another key.
    std::fs::write(&path, &good).unwrap();
    assert!(matches!(verify(&path, "sess-3", &key), Err(RecordingError::WrongSession { .. })));
    assert!(matches!(verify(&path, "sess-2", &new_key()), Err(RecordingError::Tampered(0))));
    assert!(verify(&path, "sess-2", &key).is_ok());

    // A crash cut (mid-chunk or at a boundary) reads as "cut after N chunks", not as altered;
    // an altered chunk before the cut is still an alteration.
    let cut = |bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        verify_allowing_cut(&path, "sess-2", &key)
    };
    let whole = cut(&good).unwrap();
    assert!(whole.sealed);
    let r = cut(&good[..bounds[2] + 7]).unwrap();
    assert!(!r.sealed && r.chunks == 2 && r.events > 0 && r.events < whole.events, "{r:?}");
    let r = cut(&good[..bounds[3]]).unwrap();
    assert!(!r.sealed && r.chunks == 3, "{r:?}");
    let mut bad = good[..bounds[3]].to_vec();
    bad[bounds[1] + 10] ^= 1;
    assert!(matches!(cut(&bad), Err(RecordingError::Tampered(1))));
    // The reader plays a cut recording up to its last whole chunk.
    std::fs::write(&path, &good[..bounds[2] + 7]).unwrap();
    let mut reader = portcullis_recording::Reader::open(&path, "sess-2", &key).unwrap().tolerating_cut();
    let played = reader.by_ref().collect::<Result<Vec<_>, _>>().unwrap();
    assert_eq!(played.len() as u64, r_events(&good[..bounds[2] + 7], &path, &key));
    assert!(reader.was_cut());
}

fn r_events(bytes: &[u8], path: &std::path::Path, key: &portcullis_recording::RecordingKey) -> u64 {
    std::fs::write(path, bytes).unwrap();
    verify_allowing_cut(path, "sess-2", key).unwrap().events
}

#[tokio::test]
async fn the_recorder_task_seals_and_compresses_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r");
    let key = new_key();
    let handle = RecordingWriter::create(&path, "s", &key).await.unwrap().spawn(64);
    let line = b"top - 10:00:00 up 1 day,  2 users,  load average: 0.00, 0.01, 0.05\r\n".repeat(20);
    for _ in 0..500 {
        handle.record(EventKind::Output, 0, line.clone()).await.unwrap();
    }
    let stats = handle.finish("done").await.unwrap();
    assert!(stats.stored_bytes * 10 < stats.payload_bytes, "{stats:?}");
    let report = verify(&path, "s", &key).unwrap();
    assert_eq!(report.events, 501);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    /// Arbitrary bytes as a recording: an error, never a panic or a hang.
    #[test]
    fn garbage_never_panics(body in prop::collection::vec(any::<u8>(), 0..4000)) {
        let key = zeroize::Zeroizing::new([7u8; 32]);
        let mut file = b"PCREC\x01\x01s".to_vec();
        file.extend_from_slice(&body);
        let r = Reader::new(&file[..], "s", &key).unwrap();
        for e in r {
            if e.is_err() { break; }
        }
    }
}

/// Small chunks continue one deflate stream: a screen that changes a little each second
/// compresses against the screens before it, and reads back exactly.
#[tokio::test]
async fn small_chunks_compress_against_earlier_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r");
    let key = new_key();
    let mut w = RecordingWriter::create(&path, "s", &key).await.unwrap();
    let mut events = Vec::new();
    // A 2 KB "screen" of varied text, redrawn 60 times with one line changed.
    let mut seed = 12345u64;
    let mut screen: Vec<String> = (0..30)
        .map(|_| {
            (0..70)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (b'a' + (seed >> 59) as u8) as char
                })
                .collect()
        })
        .collect();
    for i in 0..60u64 {
        screen[(i % 30) as usize] = format!("{i:>70}");
        let e = Event::new(i * 1_000_000, EventKind::Output, 0, screen.join("\r\n").into_bytes());
        w.push(&e);
        events.push(e);
        w.flush_chunk(false).await.unwrap();
        if i == 40 {
            // The session rests: the next chunk starts a fresh stream the reader follows.
            w.rest();
        }
    }
    let stats = w.seal().await.unwrap();
    // One screen alone compresses to well over 1 KB (random letters); against the previous
    // screens each chunk costs a few dozen bytes.
    assert!(stats.stored_bytes < 60 * 400, "{stats:?}");
    let back: Vec<Event> = Reader::open(&path, "s", &key).unwrap().map(Result::unwrap).collect();
    assert_eq!(back, events);
    // A stream chunk cannot be read without the ones before it: removing one is caught.
    let good = std::fs::read(&path).unwrap();
    let mut pos = 8;
    let first = u32::from_be_bytes(good[pos..pos + 4].try_into().unwrap()) as usize;
    pos += 4 + first;
    assert_eq!(good[pos + 4] & FLAG_STREAM, FLAG_STREAM);
    let second = u32::from_be_bytes(good[pos..pos + 4].try_into().unwrap()) as usize;
    let bad = [&good[..pos], &good[pos + 4 + second..]].concat();
    std::fs::write(&path, bad).unwrap();
    assert!(matches!(verify(&path, "s", &key), Err(RecordingError::Tampered(1))));
}

/// A session that goes quiet and wakes again: the recorder rests (drops its compression
/// context) and everything recorded before and after reads back.
#[tokio::test]
async fn the_recorder_rests_and_wakes_without_losing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r");
    let key = new_key();
    let handle = RecordingWriter::create(&path, "s", &key).await.unwrap().spawn(64);
    let screen = |i: u32| format!("frame {i}: {}\r\n", "load average 0.00 0.01 0.05 ".repeat(30)).into_bytes();
    for i in 0..3 {
        handle.record(EventKind::Output, 0, screen(i)).await.unwrap();
    }
    // Flushed after a second, then a quiet second: the recorder rests.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    for i in 3..6 {
        handle.record(EventKind::Output, 0, screen(i)).await.unwrap();
    }
    let stats = handle.finish("done").await.unwrap();
    assert!(stats.chunks >= 2, "{stats:?}");
    let back: Vec<Event> = Reader::open(&path, "s", &key).unwrap().map(Result::unwrap).collect();
    assert_eq!(back.len(), 7);
    for (i, e) in back[..6].iter().enumerate() {
        assert_eq!(e.data, screen(i as u32));
    }
    assert_eq!(back[6].kind, EventKind::End);
}

/// Recording off for the terminal: the streams are not stored; everything else is.
#[tokio::test]
async fn without_streams_keeps_only_the_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r");
    let key = new_key();
    let mut w = RecordingWriter::create(&path, "s", &key).await.unwrap().without_streams();
    for e in sample() {
        w.push(&e);
    }
    w.seal().await.unwrap();
    let back: Vec<Event> = Reader::open(&path, "s", &key).unwrap().map(Result::unwrap).collect();
    let kinds: Vec<EventKind> = back.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec![EventKind::Pty, EventKind::Shell, EventKind::Resize, EventKind::End]);
}

#[tokio::test]
async fn a_recording_is_followed_as_it_is_written() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r");
    let key = new_key();
    let events = sample();
    let mut w = RecordingWriter::create(&path, "sess-f", &key).await.unwrap();
    w.push(&events[0]);
    w.push(&events[1]);
    w.flush_chunk(false).await.unwrap();
    let mut follower = Reader::open(&path, "sess-f", &key).unwrap();
    let (first, sealed) = follower.poll_more().unwrap();
    assert_eq!((first, sealed), (events[..2].to_vec(), false));
    // Nothing new yet.
    assert_eq!(follower.poll_more().unwrap(), (vec![], false));
    for e in &events[2..10] {
        w.push(e);
    }
    w.flush_chunk(false).await.unwrap();
    // Half of a chunk written: not read yet, and read whole once the rest is there.
    let whole = std::fs::read(&path).unwrap();
    for e in &events[10..] {
        w.push(e);
    }
    w.seal().await.unwrap();
    let all = std::fs::read(&path).unwrap();
    let partial = whole.len() + (all.len() - whole.len()) / 2;
    std::fs::write(&path, &all[..partial]).unwrap();
    let (next, sealed) = follower.poll_more().unwrap();
    assert_eq!((next, sealed), (events[2..10].to_vec(), false));
    std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(&all[partial..]).unwrap();
    let (rest, sealed) = follower.poll_more().unwrap();
    assert_eq!((rest, sealed), (events[10..].to_vec(), true));
}
