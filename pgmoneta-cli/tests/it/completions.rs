//! Shell completions and the man page, generated from the command line's definition.

use std::process::Command;

#[test]
fn cli_generates_completions_and_a_man_page() {
    let cli = env!("CARGO_BIN_EXE_pgmoneta-cli");
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(cli).args(["completions", shell]).output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("list-backup") && text.contains("compress"), "{shell}: {text}");
    }
    let out = Command::new(cli).arg("man").output().unwrap();
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && page.starts_with(".ie") && page.contains(".TH pgmoneta-cli 1"), "{page}");
    assert!(page.contains("list\\-backup"), "{page}");
}
