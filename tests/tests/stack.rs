//! The local stack comes up from the template and leaves nothing behind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::time::{Duration, Instant};

use serde_json::json;

fn alive(pid: u32) -> bool {
    // A zombie has no cmdline; a reaped process has no /proc entry.
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

#[tokio::test(flavor = "multi_thread")]
async fn stack_tears_down_every_process_it_started() {
    let stack = cmek_e2e::stack("teardown", |_| {}).await;
    let ws = cmek_e2e::workspace_id(&cmek_e2e::workspaces(&stack)[0]);
    let r = stack
        .run(&json!({"workspaceId": ws}), cmek_e2e::TIMEOUT)
        .await
        .unwrap();
    assert_eq!(r.status, "SUCCEEDED");
    let mut pids: Vec<u32> = stack.host.stats().iter().filter_map(|s| s.pid).collect();
    assert!(
        pids.len() >= 6,
        "every workflow function ran in its own process: {pids:?}"
    );
    pids.push(stack.moto_pid().unwrap());
    assert!(pids.iter().all(|p| alive(*p)));
    drop(stack);
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left: Vec<&u32> = pids.iter().filter(|p| alive(**p)).collect();
    assert!(left.is_empty(), "still running after teardown: {left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_stacks_run_side_by_side() {
    let (a, b) = tokio::join!(
        cmek_e2e::stack("side-a", |_| {}),
        cmek_e2e::stack("side-b", |_| {})
    );
    assert_ne!(a.moto_url, b.moto_url);
    assert_ne!(a.host.url, b.host.url);
    assert_ne!(a.admin.url, b.admin.url);
    let wa = cmek_e2e::workspace_id(&cmek_e2e::workspaces(&a)[0]);
    let wb = cmek_e2e::workspace_id(&cmek_e2e::workspaces(&b)[0]);
    let (ia, ib) = (json!({"workspaceId": wa}), json!({"workspaceId": wb}));
    let (ra, rb) = tokio::join!(a.run(&ia, cmek_e2e::TIMEOUT), b.run(&ib, cmek_e2e::TIMEOUT));
    assert_eq!(ra.unwrap().status, "SUCCEEDED");
    assert_eq!(rb.unwrap().status, "SUCCEEDED");
}
