use super::*;

const U: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

fn cp(server_id: u32, epoch: u32, file: &str, pos: u64, gtid: &str) -> Checkpoint {
    Checkpoint {
        server_id,
        epoch,
        position: BinlogPosition::new(file, pos),
        gtid_set: GtidSet::parse(gtid).unwrap(),
        ts_ms: 0,
        snapshot: None,
        resnapshot: None,
    }
}

fn server(server_id: u32, files: &[(&str, u64)], executed: &str, purged: &str, at: Option<&str>) -> ServerFacts {
    ServerFacts {
        server_id,
        binlogs: files.iter().map(|(f, s)| (f.to_string(), *s)).collect(),
        executed: GtidSet::parse(executed).unwrap(),
        purged: GtidSet::parse(purged).unwrap(),
        at_checkpoint: at.map(|a| GtidSet::parse(a).unwrap()),
    }
}

fn state(epoch: u32, high: u64) -> EpochState {
    EpochState { epoch, high }
}

/// What [`plan`] decides: the start, the epoch, and a fragment of the reason or refusal.
#[derive(Debug)]
enum Expect {
    Resume(Start, u32),
    Refuse(&'static str),
}

#[test]
fn resume_plans_follow_the_server_and_the_epoch_file() {
    use Expect::*;
    let mariadb_files = [("binlog.000002", 1000), ("binlog.000003", 800)];
    let cases: Vec<(&str, Option<Checkpoint>, EpochState, ServerFacts, Expect)> = vec![
        (
            "no checkpoint: fresh, in the epoch file's epoch",
            None,
            state(4, 9),
            server(1, &mariadb_files, "0-1-20", "0-1-3", None),
            Resume(Start::Fresh, 4),
        ),
        (
            "the same server and history: by position, same epoch",
            Some(cp(1, 2, "binlog.000003", 500, "0-1-20")),
            state(2, 5),
            server(1, &mariadb_files, "0-1-25", "0-1-3", Some("0-1-20")),
            Resume(Start::Position, 2),
        ),
        (
            "a checkpoint older than the epoch file: by position, epoch raised above the file's high",
            Some(cp(1, 2, "binlog.000003", 500, "0-1-20")),
            state(6, 9),
            server(1, &mariadb_files, "0-1-25", "0-1-3", Some("0-1-20")),
            Resume(Start::Position, 7),
        ),
        (
            "old checkpoint file (epoch 0, server_id 0): by position",
            Some(cp(0, 0, "binlog.000003", 500, "0-1-20")),
            state(0, 0),
            server(1, &mariadb_files, "0-1-25", "0-1-3", Some("0-1-20")),
            Resume(Start::Position, 0),
        ),
        (
            "another server that has the checkpoint's GTIDs: by GTID, epoch above the old history",
            Some(cp(1, 0, "binlog.000003", 500, "0-1-20")),
            state(0, 3),
            server(2, &[("binlog.000001", 9000)], "0-1-40", "", None),
            Resume(Start::Gtid, 3),
        ),
        (
            "another server numbered higher: by GTID, epoch + 1",
            Some(cp(1, 0, "binlog.000003", 500, "0-1-20")),
            state(0, 3),
            server(2, &[("binlog.000040", 9000)], "0-1-40", "0-1-10", None),
            Resume(Start::Gtid, 1),
        ),
        (
            "the unsaved window reached a later file: above it too",
            Some(cp(1, 0, "binlog.000003", 500, "0-1-20")),
            state(0, 4),
            server(2, &[("binlog.000001", 9000)], "0-1-40", "", None),
            Resume(Start::Gtid, 4),
        ),
        (
            "same server_id, RESET MASTER, fewer bytes since: the position is beyond the file's end",
            Some(cp(1, 0, "binlog.000001", 5000, "0-1-20")),
            state(0, 1),
            server(1, &[("binlog.000001", 900)], "0-1-2", "", None),
            Refuse("beyond the end of binlog.000001"),
        ),
        (
            "same server_id, RESET MASTER, more bytes since: the GTID state at the position differs",
            Some(cp(1, 0, "binlog.000001", 500, "0-1-20")),
            state(0, 1),
            server(1, &[("binlog.000001", 90_000)], "0-1-300", "", Some("0-1-2")),
            Refuse("RESET MASTER"),
        ),
        (
            "same server_id, RESET MASTER, the file is gone: cannot resume by GTID either",
            Some(cp(1, 0, "binlog.000007", 500, "0-1-20")),
            state(0, 7),
            server(1, &[("binlog.000001", 900)], "0-1-2", "", None),
            Refuse("RESET MASTER"),
        ),
        (
            "another server lacking the checkpoint's last GTID (a lagging replica)",
            Some(cp(1, 0, "binlog.000003", 500, "0-1-20")),
            state(0, 3),
            server(2, &[("binlog.000001", 9000)], "0-1-19", "", None),
            Refuse("has not executed every transaction"),
        ),
        (
            "another server that purged transactions after the checkpoint",
            Some(cp(1, 0, "binlog.000003", 500, "0-1-20")),
            state(0, 3),
            server(2, &[("binlog.000009", 9000)], "0-1-40", "0-1-30", None),
            Refuse("purged transactions"),
        ),
        (
            "another server with a domain the capture never saw, partly purged",
            Some(cp(1, 0, "binlog.000003", 500, "0-1-20")),
            state(0, 3),
            server(2, &[("binlog.000009", 9000)], "0-1-40,1-5-9", "0-1-10,1-5-4", None),
            Refuse("purged transactions"),
        ),
        (
            "a checkpoint without GTIDs cannot move to another server",
            Some(cp(1, 0, "binlog.000003", 500, "")),
            state(0, 3),
            server(2, &[("binlog.000001", 9000)], "0-1-40", "", None),
            Refuse("no GTID set"),
        ),
        (
            "MySQL failover with tagged GTIDs: by GTID",
            Some(cp(1, 3, "binlog.000012", 500, &format!("{U}:1-100:tag:1-5"))),
            state(3, 15),
            server(2, &[("binlog.000002", 9000)], &format!("{U}:1-150:tag:1-9"), &format!("{U}:1-50"), None),
            Resume(Start::Gtid, 14),
        ),
        (
            "MySQL: the new server purged tagged transactions the checkpoint lacks",
            Some(cp(1, 3, "binlog.000012", 500, &format!("{U}:1-100"))),
            state(3, 15),
            server(2, &[("binlog.000002", 9000)], &format!("{U}:1-150:tag:1-9"), &format!("{U}:1-50:tag:1"), None),
            Refuse("purged transactions"),
        ),
        (
            "MySQL after RESET MASTER: gtid_executed no longer has the checkpoint's",
            Some(cp(1, 0, "binlog.000001", 500, &format!("{U}:1-100"))),
            state(0, 1),
            server(1, &[("binlog.000001", 90_000)], &format!("{U}:1-3"), "", None),
            Refuse("RESET MASTER"),
        ),
    ];
    for (name, checkpoint, epochs, facts, expect) in cases {
        let got = plan(checkpoint.as_ref(), epochs, &facts);
        match (&expect, &got) {
            (Expect::Resume(start, epoch), Ok(p)) => {
                assert_eq!((p.start, p.epoch), (*start, *epoch), "{name}: {p:?}");
                if let Some(cp) = &checkpoint {
                    let first = facts.binlogs.iter().filter_map(|(f, _)| file_seq(f)).min().unwrap();
                    let first = if p.start == Start::Position { file_seq(&cp.position.file).unwrap() } else { first };
                    let published = epochs.high.max(u64::from(cp.epoch) + file_seq(&cp.position.file).unwrap());
                    if p.start == Start::Gtid || p.epoch != cp.epoch {
                        assert!(u64::from(p.epoch) + first > published, "{name}: {p:?}");
                    }
                }
            }
            (Expect::Refuse(fragment), Err(r)) => assert!(r.why.contains(fragment), "{name}: {}", r.why),
            _ => panic!("{name}: expected {expect:?}, got {got:?}"),
        }
    }
}

#[test]
fn a_snapshot_in_progress_on_another_server_is_refused() {
    let mut checkpoint = cp(1, 0, "binlog.000003", 500, "0-1-20");
    checkpoint.snapshot = Some(Default::default());
    let refusal = plan(Some(&checkpoint), state(0, 3), &server(2, &[("binlog.000001", 9)], "0-1-40", "", None)).unwrap_err();
    assert!(refusal.why.contains("snapshot was in progress"), "{}", refusal.why);
    assert!(refusal.purged_file.is_none());
}

#[test]
fn a_file_purged_from_the_same_server_is_reported_as_purged() {
    let checkpoint = cp(1, 0, "binlog.000001", 500, "0-1-20");
    let facts = server(1, &[("binlog.000004", 9)], "0-1-90", "0-1-50", None);
    let refusal = plan(Some(&checkpoint), state(0, 1), &facts).unwrap_err();
    assert_eq!(refusal.purged_file, Some(("binlog.000001".into(), "binlog.000004".into())));
    let message = refusal_error("users", refusal, "/state/users.json").to_string();
    assert!(message.contains("no longer on the server") && message.contains("keep the .epoch file"), "{message}");
}

#[test]
fn stream_requests_resume_by_position_or_by_gtid_set() {
    let by_position = cp(1, 0, "binlog.000003", 500, "0-1-20");
    let (session, _) = stream_request(&by_position, Flavor::MariaDb, 9).unwrap();
    assert!(session.is_empty());
    let plan = ResumePlan { start: Start::Gtid, epoch: 4, reason: None };
    let start = plan.start_from(by_position.clone(), 2);
    assert_eq!((start.server_id, start.epoch, start.position.file.as_str()), (2, 4, ""));
    let (session, _) = stream_request(&start, Flavor::MariaDb, 9).unwrap();
    assert_eq!(session, vec!["SET @slave_connect_state = '0-1-20'".to_string()]);
    let mysql = plan.start_from(cp(1, 0, "binlog.000003", 500, &format!("{U}:1-5:7:tag:1-2")), 2);
    let (session, _) = stream_request(&mysql, Flavor::MySql, 9).unwrap();
    assert!(session.is_empty());
    let blocks = sids(&mysql.gtid_set).unwrap();
    let shown: Vec<String> = blocks.iter().map(ToString::to_string).collect();
    assert_eq!(shown, vec![format!("{U}:1-5:7"), format!("{U}:tag:1-2")]);
}
