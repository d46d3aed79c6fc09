//! Our files against the reference command-line tools, both ways.

use std::process::Command;

use pgmoneta_compress::{compress_file, decompress_file, Algorithm, EncoderOptions};

use crate::wal_segment;

fn tool(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::Gzip => "gzip",
        Algorithm::Zstd => "zstd",
        Algorithm::Lz4 => "lz4",
        Algorithm::Bzip2 => "bzip2",
        _ => unreachable!(),
    }
}

fn run(cmd: &mut Command) {
    let out =
        cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e} (is the tool installed? scripts/setup.sh installs it)"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn our_files_decompress_with_the_tools_and_theirs_with_ours() {
    let original = wal_segment(0);
    let dir = tempfile::tempdir().unwrap();
    for algorithm in Algorithm::COMPRESSING {
        let name = tool(algorithm);
        // Ours -> the tool.
        let ours = dir.path().join(format!("ours-{name}"));
        std::fs::write(&ours, &original).unwrap();
        let packed = compress_file(&ours, algorithm, EncoderOptions::default_for(algorithm)).unwrap();
        let out = dir.path().join(format!("ours-{name}.out"));
        let mut cmd = Command::new(name);
        cmd.arg("-d").arg("-c").arg(&packed).stdout(std::fs::File::create(&out).unwrap());
        run(&mut cmd);
        assert!(std::fs::read(&out).unwrap() == original, "{name} -d disagrees with our {algorithm}");

        // The tool -> ours. The tools' suffixes differ from pgmoneta's for zstd.
        let theirs = dir.path().join(format!("theirs-{name}"));
        std::fs::write(&theirs, &original).unwrap();
        let tool_out = dir.path().join(format!("theirs-{name}{}", algorithm.suffix()));
        let mut cmd = Command::new(name);
        cmd.arg("-c").arg(&theirs).stdout(std::fs::File::create(&tool_out).unwrap());
        run(&mut cmd);
        std::fs::remove_file(&theirs).unwrap();
        let restored = decompress_file(&tool_out).unwrap();
        assert!(std::fs::read(&restored).unwrap() == original, "our {algorithm} decoder disagrees with {name}");
    }
}

#[test]
fn zstd_frames_of_unknown_size_from_a_pipe_are_read_too() {
    // `zstd` compressing a pipe cannot know the size: one frame without a content size, which we
    // read with zstd's streaming decoder.
    let original = wal_segment(2);
    let mut child = Command::new("zstd")
        .args(["-q", "-c", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("zstd");
    let mut stdin = child.stdin.take().unwrap();
    let input = original.clone();
    let feeder = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input).unwrap());
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(out.status.success());
    let packed = out.stdout;
    assert_eq!(packed[4] >> 6, 0, "expected a frame without a content size");
    let restored = pgmoneta_compress::decompress(Algorithm::Zstd, &packed, 1 << 30).unwrap();
    assert!(restored == original);
    // Cut short: an error, also on this path.
    assert!(pgmoneta_compress::decompress(Algorithm::Zstd, &packed[..packed.len() - 10], 1 << 30).is_err());
}
