//! Replays `fuzz/regressions/<target>/*` (every input a fuzz target ever failed on, plus the
//! hostile inputs of issue 15) through the target's body, each on its own thread under a time
//! limit: none may panic, and none may run past the limit.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

/// Generous for a debug build on a slow machine; the fuzzer's own limit is 10 s.
const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn every_recorded_input_returns_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    let mut replayed = 0;
    for (name, body) in cuma_fuzz::TARGETS {
        let dir = root.join(name);
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let data = std::fs::read(&path).expect("read regression input");
            let (done, wait) = mpsc::channel();
            let worker = std::thread::spawn(move || {
                body(&data);
                let _ = done.send(());
            });
            match wait.recv_timeout(LIMIT) {
                Ok(()) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("{}: still running after {LIMIT:?}", path.display()),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = worker.join();
                    panic!("{}: the target panicked", path.display());
                }
            }
            replayed += 1;
        }
    }
    eprintln!("replayed {replayed} regression inputs");
    assert!(replayed > 0, "no regression inputs found under {}", root.display());
}
