//! Runs the browser library's unit tests (`tests/js/*.test.mjs`) with Node's own test
//! runner, so `cargo test` covers both ends of the shared hex vectors.

use std::process::Command;

#[test]
fn protocol_js_unit_tests_pass() {
    let root = env!("CARGO_MANIFEST_DIR");
    let output = Command::new("node")
        .args(["--test", "tests/js/"])
        .current_dir(root)
        .output()
        .expect("node (20 or later) must be installed to test html/protocol.js");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "node --test failed:\n{stdout}\n{stderr}");
    let passed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("# pass "))
        .and_then(|n| n.trim().parse::<u32>().ok())
        .unwrap_or(0);
    assert!(passed > 50, "expected the JS suite to run, saw {passed} passing tests:\n{stdout}");
}
