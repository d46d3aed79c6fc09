//! Clustering: nodes that find each other over TLS with SCRAM, the server's slot deciding which
//! one is active, and peers that are refused.

use std::path::Path;

use pgmoneta_crypto::{MasterKeyFile, Vault, VaultKind};
use pgmoneta_testkit::TestCa;
use pgmoneta_wire::message::backend::BackendMessage;
use serde_json::Value;

use crate::{cluster, free_port, node_lines, share_keys, Daemon};

fn status(d: &Daemon) -> Value {
    d.ok(&["cluster", "status"])
}

fn peer<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["Peers"].as_array().unwrap().iter().find(|p| p["Node"] == name).unwrap_or_else(|| panic!("{status:#}"))
}

fn own_role(status: &Value) -> String {
    status["Servers"][0]["Role"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn nodes_see_each_other_one_holds_the_slot_and_a_wrong_password_or_plain_tcp_is_refused() {
    let source = cluster();
    let certs = tempfile::tempdir_in("/tmp").unwrap();
    let ca = TestCa::new("pgmoneta cluster test CA").unwrap();
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let peers = |skip: &str| {
        [("a", pa), ("b", pb), ("c", pc)]
            .iter()
            .filter(|(n, _)| *n != skip)
            .map(|(n, p)| format!("{n}=127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut a = Daemon::new(&source, &node_lines(certs.path(), &ca, "a", pa, &peers("a")));
    let mut b = Daemon::new(&source, &node_lines(certs.path(), &ca, "b", pb, &peers("b")));
    let mut c = Daemon::new(&source, &node_lines(certs.path(), &ca, "c", pc, &peers("c")));
    share_keys(&a, &b);
    share_keys(&a, &c);
    // c's admins vault has another password for the cluster user: the others refuse it, and
    // it refuses them.
    let key = MasterKeyFile::new(c.home.join(".pgmoneta").join("master.key")).load().unwrap();
    let mut vault = Vault::new(VaultKind::Admins);
    vault.add(&key, "admin", "not-the-cluster-password").unwrap();
    vault.save(&c.dir.path().join("pgmoneta_admins.conf")).unwrap();
    a.start();
    b.start();

    a.wait_for("a and b hear each other", || {
        let (sa, sb) = (status(&a), status(&b));
        peer(&sa, "b")["Reachable"] == true
            && peer(&sb, "a")["Reachable"] == true
            && peer(&sa, "b")["Servers"][0]["Server"] == "primary"
    });
    a.wait_for("one of a and b active for primary, the other following it", || {
        let roles = [own_role(&status(&a)), own_role(&status(&b))];
        roles.contains(&"active".to_owned()) && roles.contains(&"follower".to_owned())
    });
    let (active, follower) = if own_role(&status(&a)) == "active" { (&a, &b) } else { (&b, &a) };

    // The follower copies the active node's WAL archive, byte for byte, without a gap.
    source.execute("CREATE TABLE t (n int); INSERT INTO t SELECT generate_series(1, 50000)").unwrap();
    let mut last = String::new();
    for _ in 0..3 {
        last = source.switch_wal().unwrap();
        source.execute("INSERT INTO t SELECT generate_series(1, 1000)").unwrap();
    }
    let sealed = |d: &Daemon| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(d.base.join("primary/wal"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".zstd.aes"))
            .collect();
        names.sort();
        names
    };
    follower.wait_for("the follower holds every segment the active node sealed", || {
        let theirs = sealed(active);
        theirs.iter().any(|n| n.starts_with(&last)) && sealed(follower) == theirs
    });
    for name in sealed(active) {
        let (x, y) = (active.base.join("primary/wal").join(&name), follower.base.join("primary/wal").join(&name));
        assert_eq!(std::fs::read(x).unwrap(), std::fs::read(y).unwrap(), "{name} differs");
    }
    let active_name = if std::ptr::eq(active, &a) { "a" } else { "b" };
    let follower_name = if active_name == "a" { "b" } else { "a" };
    let sf = status(follower);
    assert_eq!(peer(&sf, active_name)["Servers"][0]["Role"], "active", "{sf:#}");
    // The active node's metrics show its role and the follower, heard and caught up: it lacks
    // at most the segment being written, which only the active node holds until it is complete.
    let mut last_body = String::new();
    let caught_up = (0..100).any(|_| {
        let (_, body) = crate::metrics::http(active.metrics_port, "GET /metrics HTTP/1.1\r\n\r\n");
        let value = |sample: &str| -> Option<f64> {
            body.lines().find_map(|l| l.strip_prefix(sample)).and_then(|v| v.trim().parse().ok())
        };
        let lag = value(&format!("pgmoneta_cluster_peer_wal_lag_bytes{{node=\"{follower_name}\",name=\"primary\"}} "));
        let ok = value("pgmoneta_cluster_role{name=\"primary\",role=\"active\"} ") == Some(1.0)
            && value(&format!("pgmoneta_cluster_peer_reachable{{node=\"{follower_name}\"}} ")) == Some(1.0)
            && lag.is_some_and(|l| l < f64::from(16u32 << 20));
        last_body = body.lines().filter(|l| l.starts_with("pgmoneta_cluster")).collect::<Vec<_>>().join("\n");
        if !ok {
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        ok
    });
    assert!(caught_up, "the active node's metrics do not show the follower caught up:\n{last_body}");

    c.start();
    // The slot lets one node stream; that node is active and the others follow.
    a.wait_for("exactly one node active for primary, the others following", || {
        let roles: Vec<String> = [&a, &b, &c].iter().map(|d| own_role(&status(d))).collect();
        roles.iter().filter(|r| *r == "active").count() == 1 && roles.iter().filter(|r| *r == "follower").count() == 2
    });
    let (sa, sb) = (status(&a), status(&b));
    // What a says of b is what b says of itself.
    assert_eq!(peer(&sa, "b")["Servers"][0]["Role"], sb["Servers"][0]["Role"], "{sa:#}\n{sb:#}");
    assert_eq!(peer(&sb, "a")["Servers"][0]["Role"], sa["Servers"][0]["Role"], "{sa:#}\n{sb:#}");

    // c cannot authenticate: both sides say so, and c is never heard.
    a.wait_for("c is refused by a and b, with the reason", || {
        let sc = status(&c);
        ["a", "b"].iter().all(|n| peer(&sc, n)["Problem"].as_str().is_some_and(|p| p.contains("refused")))
    });
    for d in [&a, &b] {
        let s = status(d);
        assert_eq!(peer(&s, "c")["Reachable"], false, "{s:#}");
        assert!(peer(&s, "c").get("LastHeardMs").is_none(), "{s:#}");
    }
    // A reload that removes b from a's peers ends the link both ways; adding it back links
    // them again, without a restart.
    let b_entry = format!("b=127.0.0.1:{pb}");
    a.edit_main(&format!("cluster_peers = {}", peers("a")), &format!("cluster_peers = c=127.0.0.1:{pc}"));
    a.ok(&["conf", "reload"]);
    a.wait_for("a forgets b and b stops hearing a", || {
        let sa = status(&a);
        sa["Peers"].as_array().unwrap().iter().all(|p| p["Node"] != "b") && peer(&status(&b), "a")["Reachable"] == false
    });
    a.edit_main(&format!("cluster_peers = c=127.0.0.1:{pc}"), &format!("cluster_peers = {b_entry}, c=127.0.0.1:{pc}"));
    a.ok(&["conf", "reload"]);
    a.wait_for("a and b hear each other again", || {
        peer(&status(&a), "b")["Reachable"] == true && peer(&status(&b), "a")["Reachable"] == true
    });

    // A connection that does not ask for TLS is refused before authentication.
    match crate::remote::plain_startup(pa, "admin") {
        Some(BackendMessage::ErrorResponse(e)) => assert_eq!(e.field(b'M'), Some("connection refused")),
        other => panic!("a plain connection to the cluster port was not refused: {other:?}"),
    }
    // A node with another master key is refused, and told why.
    let pd = free_port();
    let mut d = Daemon::new(&source, &node_lines(certs.path(), &ca, "d", pd, &format!("a=127.0.0.1:{pa}")));
    d.start();
    d.wait_for("d is refused by a for its master key", || {
        peer(&status(&d), "a")["Problem"].as_str().is_some_and(|p| p.contains("master key"))
    });
    drop(d);
    // A node that is not in the cluster has nothing to show.
    let mut single = Daemon::new(&source, "");
    single.start();
    let message = single.fails(&["cluster", "status"], 10000);
    assert!(message.contains("not in a cluster"), "{message}");
}

/// Segment numbers of the sealed WAL files of `d`'s archive of `primary`, in order.
fn sealed_segments(d: &Daemon) -> Vec<u64> {
    let mut numbers: Vec<u64> = std::fs::read_dir(d.base.join("primary/wal"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            let plain = name.strip_suffix(".zstd.aes")?;
            // Timeline, then log and segment numbers (16 MiB segments: 256 per log).
            let (log, seg) =
                (u64::from_str_radix(&plain[8..16], 16).ok()?, u64::from_str_radix(&plain[16..], 16).ok()?);
            Some(log * 256 + seg)
        })
        .collect();
    numbers.sort_unstable();
    numbers
}

fn segment_number(name: &str) -> u64 {
    u64::from_str_radix(&name[8..16], 16).unwrap() * 256 + u64::from_str_radix(&name[16..24], 16).unwrap()
}

fn partials(d: &Daemon) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(d.base.join("primary/wal"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect();
    out.sort();
    out
}

#[test]
fn commands_go_to_the_active_node_a_paused_one_steps_down_and_a_killed_one_is_replaced_without_a_gap() {
    // The server drops a silent WAL sender after 4 s: longer than the 3 s takeover, as the
    // documentation asks.
    let source = pgmoneta_testkit::Cluster::builder().setting("wal_sender_timeout", "4s").start().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let (a, b, _certs) = crate::start_pair(&source, (pa, pb), (pb, pa), ("", ""));
    let a_first = own_role(&status(&a)) == "active";
    let (mut active, mut follower) = if a_first { (a, b) } else { (b, a) };

    // A backup asked of the follower runs on the active node, and the reply is its reply.
    let reply = follower.ok(&["backup", "primary"]);
    let label = reply["Backup"].as_str().unwrap_or_else(|| panic!("{reply:#}")).to_owned();
    let listed = active.ok(&["list-backup", "primary"]);
    assert!(listed["Backups"].to_string().contains(&label), "{listed:#}");
    assert!(active.log_text().contains("forwarded by"), "{}", active.log_text());

    // Some WAL, copied to the follower.
    source.execute("CREATE TABLE t (n int); INSERT INTO t SELECT generate_series(1, 10000)").unwrap();
    let mut last = String::new();
    for _ in 0..2 {
        last = source.switch_wal().unwrap();
        source.execute("INSERT INTO t SELECT generate_series(1, 1000)").unwrap();
    }
    follower.wait_for("the follower holds what the active node sealed", || {
        let theirs = sealed_segments(&active);
        theirs.last() >= Some(&segment_number(&last)) && sealed_segments(&follower) == theirs
    });

    // Paused, the active node loses the slot when the server gives up on it; the follower
    // takes over. Resumed, the old node writes nothing more from its stream and follows.
    active.signal(nix::sys::signal::Signal::SIGSTOP);
    let paused_partials = partials(&active);
    let log_mark = active.log_text().len();
    let paused = std::time::Instant::now();
    follower.wait_for("the follower takes over from the paused node", || own_role(&status(&follower)) == "active");
    eprintln!("takeover from a paused node: {:?}", paused.elapsed());
    source.execute("INSERT INTO t SELECT generate_series(1, 1000)").unwrap();
    let after_pause = source.switch_wal().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(1));
    active.signal(nix::sys::signal::Signal::SIGCONT);
    active.wait_for("the resumed node follows", || own_role(&status(&active)) == "follower");
    let log = active.log_text()[log_mark..].to_owned();
    assert!(!log.contains("holds the slot and is active"), "the resumed node became active again:\n{log}");
    assert!(log.contains("writing nothing for it"), "the resumed node did not fence itself:\n{log}");
    for (name, bytes) in &paused_partials {
        let path = active.base.join("primary/wal").join(name);
        if let Ok(now) = std::fs::read(&path) {
            assert!(now == *bytes, "{name} changed after the node was resumed:\n{log}");
        }
    }
    for (name, _) in partials(&active) {
        assert!(paused_partials.iter().any(|(n, _)| *n == name), "the resumed node began {name}:\n{log}");
    }
    std::mem::swap(&mut active, &mut follower);
    follower.wait_for("the old node catches up", || {
        let theirs = sealed_segments(&active);
        theirs.last() >= Some(&segment_number(&after_pause)) && sealed_segments(&follower) == theirs
    });

    // Killed, the active node is replaced within 10 s, and the new active node's archive
    // goes on from its copy with no gap.
    let killed = std::time::Instant::now();
    active.kill9();
    follower.wait_for("the follower takes over from the killed node", || own_role(&status(&follower)) == "active");
    let took = killed.elapsed();
    assert!(took < std::time::Duration::from_secs(10), "takeover took {took:?}");
    eprintln!("takeover after kill -9: {took:?}");
    source.execute("INSERT INTO t SELECT generate_series(1, 1000)").unwrap();
    let after_kill = source.switch_wal().unwrap();
    follower.wait_for("the new active node archives the newest segment", || {
        sealed_segments(&follower).last() >= Some(&segment_number(&after_kill))
    });
    let held = sealed_segments(&follower);
    let first = held[0];
    let expected: Vec<u64> = (first..=*held.last().unwrap()).collect();
    assert_eq!(held, expected, "a gap in the archive of the node that took over");

    // A point in time after the takeover: the node that took over restores the backup taken
    // before both failures up to it, and PostgreSQL stops exactly there.
    source.execute("INSERT INTO t SELECT generate_series(1, 777)").unwrap();
    let rows = source.query_scalar("SELECT count(*) FROM t").unwrap();
    let target: pgmoneta_core::Lsn = source.query_scalar("SELECT pg_current_wal_lsn()").unwrap().parse().unwrap();
    source.execute("INSERT INTO t SELECT generate_series(1, 333)").unwrap();
    let after_target = source.switch_wal().unwrap();
    follower.wait_for("the segment with the target is archived", || {
        sealed_segments(&follower).last() >= Some(&segment_number(&after_target))
    });
    let out = crate::shared_dir("pgmoneta-cluster-pitr-");
    let position = format!("lsn={target},action=promote");
    follower.ok(&["restore", "primary", &label, &position, out.path().to_str().unwrap()]);
    let mut copy = crate::start_restored(&source, &out.path().join(format!("primary-{label}")));
    assert_eq!(copy.query_scalar("SELECT count(*) FROM t").unwrap(), rows);
    copy.stop().unwrap();
}

/// Every file of backup `label` on `theirs`, as stored (links followed), by path.
fn backup_files(d: &Daemon, label: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
    let root = d.base.join("primary/backup").join(label);
    let mut out = std::collections::BTreeMap::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                if !path.is_symlink() {
                    dirs.push(path);
                }
                continue;
            }
            if path.is_symlink() {
                let target = std::fs::canonicalize(&path).unwrap();
                assert!(
                    target.starts_with(&d.base),
                    "{} points outside its node: {}",
                    path.display(),
                    target.display()
                );
            }
            out.insert(path.strip_prefix(&root).unwrap().display().to_string(), std::fs::read(&path).unwrap());
        }
    }
    out
}

fn listed(d: &Daemon) -> Vec<Value> {
    d.ok(&["list-backup", "primary"])["Backups"].as_array().cloned().unwrap_or_default()
}

#[test]
fn backups_reach_every_node_changes_follow_them_and_each_node_restores() {
    let source = cluster();
    let certs = tempfile::tempdir_in("/tmp").unwrap();
    let ca = TestCa::new("pgmoneta backup copy test CA").unwrap();
    let ports = [free_port(), free_port(), free_port()];
    let names = ["a", "b", "c"];
    let mut nodes: Vec<Daemon> = (0..3)
        .map(|i| {
            let peers: Vec<String> =
                (0..3).filter(|j| *j != i).map(|j| format!("{}=127.0.0.1:{}", names[j], ports[j])).collect();
            Daemon::new(&source, &node_lines(certs.path(), &ca, names[i], ports[i], &peers.join(", ")))
        })
        .collect();
    for i in 1..3 {
        share_keys(&nodes[0], &nodes[i]);
    }
    for n in &mut nodes {
        n.start();
    }
    nodes[0].wait_for("one node active for primary, two following", || {
        let roles: Vec<String> = nodes.iter().map(|d| own_role(&status(d))).collect();
        roles.iter().filter(|r| *r == "active").count() == 1 && roles.iter().filter(|r| *r == "follower").count() == 2
    });
    let active = nodes.iter().position(|d| own_role(&status(d)) == "active").unwrap();
    let followers: Vec<usize> = (0..3).filter(|i| *i != active).collect();
    let (active, f1, f2) = (&nodes[active], &nodes[followers[0]], &nodes[followers[1]]);

    source.execute("CREATE TABLE t (n int); INSERT INTO t SELECT generate_series(1, 100)").unwrap();
    source.pgbench_init(1).unwrap();
    // The rest runs under pgbench load.
    let (first, second, target) = std::thread::scope(|scope| {
        let load = scope.spawn(|| source.pgbench_for(2, 6, &["-N"]));
        // While another session holds the nodes' backup lock on the server, no backup starts.
        let options = pgmoneta_wire::ConnectOptions::new(source.host(), source.port(), pgmoneta_testkit::SUPERUSER)
            .password(source.superuser_password())
            .database("postgres");
        let mut holder = pgmoneta_wire::PgConnection::connect(&options).unwrap();
        holder.query_one("SELECT pg_advisory_lock(1885826415, 1)").unwrap();
        let message = f1.fails(&["backup", "primary"], 102);
        assert!(message.contains("backup lock"), "{message}");
        holder.close().unwrap();
        let first = f1.ok(&["backup", "primary"])["Backup"].as_str().unwrap().to_owned();
        source.execute("INSERT INTO t SELECT generate_series(101, 200)").unwrap();
        let second = active.ok(&["backup", "primary"])["Backup"].as_str().unwrap().to_owned();
        source.execute("INSERT INTO t SELECT generate_series(201, 300)").unwrap();
        let target: pgmoneta_core::Lsn = source.query_scalar("SELECT pg_current_wal_lsn()").unwrap().parse().unwrap();
        source.execute("INSERT INTO t SELECT generate_series(301, 400)").unwrap();
        load.join().unwrap().unwrap();
        (first, second, target)
    });
    let last = source.switch_wal().unwrap();

    // Both backups become valid on both followers, byte for byte the active node's, the
    // unchanged files of the second linked to the follower's own copy of the first.
    for f in [f1, f2] {
        f.wait_for("both backups valid on the follower, and the WAL up to the target", || {
            let l = listed(f);
            let valid = |label: &str| l.iter().any(|b| b["Backup"] == label && b["Valid"] == 1);
            valid(&first) && valid(&second) && sealed_segments(f).last() >= Some(&segment_number(&last))
        });
        for label in [&first, &second] {
            let (ours, theirs) = (backup_files(active, label), backup_files(f, label));
            assert_eq!(ours.keys().collect::<Vec<_>>(), theirs.keys().collect::<Vec<_>>(), "files of {label}");
            for (path, bytes) in &ours {
                assert!(theirs[path] == *bytes, "{label}/{path} differs on a follower");
            }
        }
        let links = walk_links(&f.base.join("primary/backup").join(&second));
        let active_links = walk_links(&active.base.join("primary/backup").join(&second));
        assert!(!active_links.is_empty(), "the second backup links nothing to the first");
        assert_eq!(links, active_links, "the follower's copy of {second} does not link as the active node's does");
    }

    let log = f1.log_text();
    let copied: Vec<&str> = log.lines().filter(|l| l.contains("copied backup")).collect();
    eprintln!("{}", copied.join("\n"));
    // Retain and annotate asked of followers happen on the active node and reach both.
    f2.ok(&["retain", "primary", &first]);
    f1.ok(&["annotate", "primary", &first, "add", "purpose", "cluster"]);
    for f in [f1, f2] {
        f.wait_for("keep and comments reach the follower", || {
            let info = f.ok(&["info", "primary", &first]);
            info["Keep"] == true && info["Comments"] == "purpose|cluster"
        });
    }
    // So does a delete: the backup goes everywhere.
    f1.ok(&["expunge", "primary", &first]);
    f2.ok(&["delete", "primary", &first]);
    for d in [active, f1, f2] {
        d.wait_for("the deleted backup is gone", || {
            listed(d).iter().all(|b| b["Backup"] != first.as_str())
                && !d.base.join("primary/backup").join(&first).exists()
        });
    }

    // Each follower restores the remaining backup to the target on its own: PostgreSQL
    // starts on it and has exactly the rows written before the target.
    for f in [f1, f2] {
        let out = crate::shared_dir("pgmoneta-cluster-restore-");
        let position = format!("lsn={target},action=promote");
        let restored = f.ok(&["restore", "primary", &second, &position, out.path().to_str().unwrap()]);
        assert_eq!(restored["Backup"], second.as_str());
        let mut copy = crate::start_restored(&source, &out.path().join(format!("primary-{second}")));
        assert_eq!(copy.query_scalar("SELECT count(*) FROM t").unwrap(), "300");
        copy.stop().unwrap();
    }
}

/// The links under `dir`, relative, each with its target relative to its node's backup
/// directory of the server.
fn walk_links(dir: &Path) -> Vec<(String, String)> {
    let backups = dir.parent().unwrap();
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_symlink() {
                let target = std::fs::canonicalize(&path).unwrap();
                if target.is_file() {
                    out.push((
                        path.strip_prefix(dir).unwrap().display().to_string(),
                        target.strip_prefix(backups).unwrap().display().to_string(),
                    ));
                }
            } else if path.is_dir() {
                dirs.push(path);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_cut_link_between_nodes_never_makes_two_writers_and_the_follower_catches_up_after() {
    let source = cluster();
    let (pa, pb) = (free_port(), free_port());
    // Each node reaches the other through a proxy the test can cut; both reach PostgreSQL.
    let (to_a, to_b) = (pgmoneta_testkit::CutProxy::start(pa), pgmoneta_testkit::CutProxy::start(pb));
    let (a, b, _certs) = crate::start_pair(&source, (pa, pb), (to_b.port(), to_a.port()), ("", ""));
    let (active, follower) = if own_role(&status(&a)) == "active" { (&a, &b) } else { (&b, &a) };
    source.execute("CREATE TABLE t (n int); INSERT INTO t SELECT generate_series(1, 1000)").unwrap();
    let before = source.switch_wal().unwrap();
    follower.wait_for("the follower holds what the active node sealed", || {
        sealed_segments(follower).last() >= Some(&segment_number(&before))
    });

    // The link goes; the follower hears no active node, claims the slot, and the server says
    // no, again and again, for three takeovers.
    let mark = follower.log_text().len();
    for p in [&to_a, &to_b] {
        p.refuse(true);
        p.cut();
    }
    let wal_files = |d: &Daemon| -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = std::fs::read_dir(d.base.join("primary/wal"))
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().len()))
            .collect();
        v.sort();
        v
    };
    let follower_files = wal_files(follower);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut last = String::new();
    let mut claimed = false;
    while std::time::Instant::now() < until {
        let (ra, rf) = (own_role(&status(active)), own_role(&status(follower)));
        assert_eq!(ra, "active", "the node holding the slot stopped being active");
        assert_ne!(rf, "active", "two active nodes");
        claimed |= rf == "claiming";
        source.execute("INSERT INTO t SELECT generate_series(1, 1000)").unwrap();
        if last.is_empty() || std::time::Instant::now() + std::time::Duration::from_secs(5) > until {
            last = source.switch_wal().unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let log = follower.log_text()[mark..].to_owned();
    assert!(claimed || log.contains("held by another node"), "the cut-off follower never tried the slot:\n{log}");
    assert!(!log.contains("holds the slot and is active"), "the cut-off follower became active:\n{log}");
    assert_eq!(wal_files(follower), follower_files, "the cut-off follower wrote WAL:\n{log}");
    active.wait_for("the active node archives through the cut", || {
        sealed_segments(active).last() >= Some(&segment_number(&last))
    });
    let held = sealed_segments(active);
    assert_eq!(held, (held[0]..=*held.last().unwrap()).collect::<Vec<_>>(), "a gap on the active node");

    // The link comes back: the follower follows again and catches up.
    for p in [&to_a, &to_b] {
        p.refuse(false);
    }
    follower.wait_for("the follower catches up once the link is back", || {
        own_role(&status(follower)) == "follower" && sealed_segments(follower) == sealed_segments(active)
    });
}
