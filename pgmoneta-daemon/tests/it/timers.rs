//! The timers: retention deletes what the policy no longer keeps, background verification
//! finds damage, both without being asked.

use crate::{cluster, Daemon};

#[test]
fn retention_and_verification_run_on_their_timers() {
    let source = cluster();
    let mut d = Daemon::new(&source, "retention_interval = 1\nverification = 2s");
    d.edit_main("retention = 7", "retention = 1");
    d.start();
    d.wait_streaming();
    let label = d.ok(&["backup", "primary"])["Backup"].as_str().unwrap().to_owned();

    // A copy of it labelled years ago, put in place whole (renamed in), as an old backup.
    let backups = d.base.join("primary/backup");
    let staging = d.dir.path().join("staging-20200101000000");
    let status = std::process::Command::new("cp").arg("-a").arg(backups.join(&label)).arg(&staging).status().unwrap();
    assert!(status.success());
    let info = std::fs::read_to_string(staging.join("backup.info")).unwrap();
    std::fs::write(staging.join("backup.info"), info.replace(&format!("LABEL={label}"), "LABEL=20200101000000"))
        .unwrap();
    std::fs::rename(&staging, backups.join("20200101000000")).unwrap();

    // Retention (1 day) deletes the old one, keeps today's.
    d.wait_for("retention", || !backups.join("20200101000000").exists());
    // The directory goes before the line is logged: wait for the line too.
    d.wait_for("the retention log line", || d.log_text().contains("retention deleted backup 20200101000000"));
    assert!(backups.join(&label).join("backup.info").exists());

    // Damage to a stored file of today's backup is found by the verification timer.
    let victim = std::fs::read_dir(backups.join(&label).join("data/global"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("1260"))
        .unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    std::fs::write(&victim, bytes).unwrap();
    d.wait_for("background verification", || d.log_text().contains("failed verification"));
    assert!(d.log_text().contains(&format!("backup {label}: global/1260")), "{}", d.log_text());
}
