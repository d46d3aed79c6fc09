//! Hot standby: the copy lands at `<hot_standby>/<server>` as upstream lays it out, with each
//! standby's tablespace map and overrides, and PostgreSQL runs on it as a standby of the server.

use std::path::Path;
use std::process::Command;

use pgmoneta_testkit::Cluster;

use crate::{shared_dir, Daemon};

/// A directory the `postgres` user owns, for a tablespace.
fn postgres_dir(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
    if nix::unistd::geteuid().is_root() {
        assert!(Command::new("chown").arg("-R").arg("postgres:postgres").arg(path).status().unwrap().success());
    }
}

#[test]
fn a_hot_standby_is_where_upstream_puts_it_and_runs_as_a_standby() {
    let source = Cluster::builder().start().unwrap();
    let work = shared_dir("pgmoneta-hs-");
    let ts = work.path().join("ts");
    postgres_dir(&ts);
    source.execute(&format!("CREATE TABLESPACE away LOCATION '{}'", ts.display())).unwrap();
    source.execute("CREATE TABLE t TABLESPACE away AS SELECT g FROM generate_series(1, 10000) g").unwrap();
    source.execute("CHECKPOINT").unwrap();
    let oid = source.query_scalar("SELECT oid FROM pg_tablespace WHERE spcname = 'away'").unwrap();

    // Two standbys: the first with overrides that make it a streaming standby and its
    // tablespace mapped by OID; the second with neither (upstream's default: path + "hs").
    let (hs1, hs2) = (work.path().join("hs1"), work.path().join("hs2"));
    let overrides = work.path().join("overrides");
    std::fs::create_dir_all(overrides.join("conf.d")).unwrap();
    std::fs::write(overrides.join("standby.signal"), "").unwrap();
    let auto = std::fs::read_to_string(source.data_dir().join("postgresql.auto.conf")).unwrap_or_default();
    std::fs::write(
        overrides.join("postgresql.auto.conf"),
        format!(
            "{auto}\nprimary_conninfo = 'host=127.0.0.1 port={} user={} password={}'\n",
            source.port(),
            source.replication_user(),
            source.replication_password()
        ),
    )
    .unwrap();
    std::fs::write(overrides.join("conf.d/marker"), "from the overrides\n").unwrap();
    let mapped = work.path().join("ts-standby");
    // A copy in the doubled place an older release wrote is replaced by the right one.
    std::fs::create_dir_all(hs2.join("primary/primary")).unwrap();
    std::fs::write(hs2.join("primary/primary/PG_VERSION"), "15\n").unwrap();

    let mut d = Daemon::new(&source, "");
    let mut conf = std::fs::read_to_string(&d.conf).unwrap();
    conf.push_str(&format!(
        "hot_standby = {},{}\nhot_standby_overrides = {}|\nhot_standby_tablespaces = {oid}->{}|\n",
        hs1.display(),
        hs2.display(),
        overrides.display(),
        mapped.display()
    ));
    std::fs::write(&d.conf, conf).unwrap();
    d.start();
    d.wait_streaming();
    d.ok(&["backup", "primary"]);

    for hs in [&hs1, &hs2] {
        let copy = hs.join("primary");
        assert!(copy.join("PG_VERSION").is_file(), "no PG_VERSION in {}", copy.display());
        assert!(!copy.join("primary").exists(), "the server name is doubled in {}", copy.display());
    }
    let link = |hs: &Path| std::fs::read_link(hs.join("primary/pg_tblspc").join(&oid)).unwrap();
    assert_eq!(link(&hs1), mapped);
    assert_eq!(link(&hs2), Path::new(&format!("{}hs", ts.display())));
    assert_eq!(std::fs::read_to_string(hs1.join("primary/conf.d/marker")).unwrap(), "from the overrides\n");
    assert!(hs1.join("primary/standby.signal").is_file());
    assert!(!hs2.join("primary/standby.signal").exists(), "overrides reached the standby without any");

    // A second backup updates the copy in place; the overrides are applied again.
    source.execute("INSERT INTO t SELECT g FROM generate_series(10001, 12000) g").unwrap();
    source.execute("CHECKPOINT").unwrap();
    d.ok(&["backup", "primary"]);
    let conf = std::fs::read_to_string(hs1.join("primary/postgresql.auto.conf")).unwrap();
    assert!(conf.contains("primary_conninfo"), "the overrides were not applied after the update:\n{conf}");

    // PostgreSQL on the standby directory itself: in recovery, with the data of the second
    // backup, following the server from there. (The daemon makes the hot standby directory
    // for its own user only; PostgreSQL runs as `postgres` here.)
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hs1, std::fs::Permissions::from_mode(0o755)).unwrap();
    let standby = Cluster::start_on(source.install().clone(), &hs1.join("primary"), source.superuser_password())
        .unwrap_or_else(|e| panic!("PostgreSQL does not start on the hot standby: {e}"));
    assert_eq!(standby.query_scalar("SELECT pg_is_in_recovery()").unwrap(), "t");
    assert_eq!(standby.query_scalar("SELECT count(*) FROM t").unwrap(), "12000");
    source.execute("INSERT INTO t SELECT g FROM generate_series(12001, 12500) g").unwrap();
    d.wait_for("streaming to the standby", || standby.query_scalar("SELECT count(*) FROM t").unwrap() == "12500");
    drop(standby);
}
