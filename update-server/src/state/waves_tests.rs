//! Unit tests of `waves`: plan parsing, windows and `advance` on made-up fleets.

use super::*;

fn plan(spec: &str, max: &str) -> RolloutPlan {
    RolloutPlan {
        version: "2.0.0".to_owned(),
        spec: spec.to_owned(),
        steps: parse_steps(spec).expect("spec"),
        max_in_flight: Share::parse(max).expect("max"),
        window: None,
        wave: 0,
        named: Vec::new(),
        opened_at: 0,
        complete: false,
    }
}

fn fleet(n: usize) -> Vec<Member> {
    (0..n)
        .map(|i| {
            let id = format!("w{i:04}");
            Member {
                bucket: manifests::cohort_bucket(&id, "salt"),
                id,
                alive: true,
                tried: false,
                running: false,
            }
        })
        .collect()
}

#[test]
fn steps_parse_and_bad_ones_are_named() {
    let steps = parse_steps("5,10%@1h,50%@4h,100%@1d").expect("issue's example");
    assert_eq!(steps.len(), 4);
    assert_eq!(
        steps[0],
        Step {
            share: Share::Workers(5),
            soak_secs: 0
        }
    );
    assert_eq!(
        steps[3],
        Step {
            share: Share::Percent(100),
            soak_secs: 86_400
        }
    );
    for (bad, says) in [
        ("", "a number of workers"),
        ("0", "at least 1"),
        ("10%,5", "come before"),
        ("50%,10%", "grow"),
        ("5,5", "grow"),
        ("101%", "1% to 100%"),
        ("5@soon", "soon"),
        ("2000", "at most 1000"),
    ] {
        let error = parse_steps(bad).expect_err(bad);
        assert!(error.contains(says), "{bad}: {error}");
    }
}

#[test]
fn windows_wrap_midnight_and_say_when_they_open() {
    let night = Window::parse("22:00-02:00").expect("window");
    assert!(night.contains(23 * 3600) && night.contains(3600) && !night.contains(12 * 3600));
    assert_eq!(night.next_open(12 * 3600), 22 * 3600);
    let early = Window::parse("02:00-05:00").expect("window");
    assert_eq!(early.next_open(6 * 3600), 86_400 + 2 * 3600);
    assert_eq!(early.to_string(), "02:00-05:00");
    assert!(Window::parse("2-5").is_err() && Window::parse("02:00-02:00").is_err());
}

#[test]
fn the_first_wave_names_five_and_waits_for_them() {
    let members = fleet(50);
    let p = plan("5,100%", "20%");
    let first = advance(&p, 0, &members, 100, None, false);
    assert_eq!(first.plan.named.len(), 5);
    assert_eq!((first.percent, first.plan.wave, first.in_flight), (0, 0, 5));
    // Nothing moves while they update.
    let again = advance(&first.plan, 0, &members, 200, None, false);
    assert_eq!(again.plan, first.plan);
    // Once they tried, the next wave opens, bounded by 20 % of 50 = 10 in flight.
    let done: Vec<Member> = members
        .iter()
        .map(|m| Member {
            tried: first.plan.named.contains(&m.id),
            ..m.clone()
        })
        .collect();
    let second = advance(&first.plan, 0, &done, 300, None, false);
    assert_eq!(second.plan.wave, 1);
    assert!(second.in_flight <= 10 && second.in_flight > 0, "{second:?}");
    assert!(second.percent > 0 && second.percent < 100);
}

#[test]
fn held_or_outside_the_window_nobody_more_is_admitted() {
    let members = fleet(50);
    let p = plan("5,100%", "20%");
    let held = advance(&p, 0, &members, 100, None, true);
    assert!(held.plan.named.is_empty() && held.waiting.is_some_and(|w| w.starts_with("held")));
    let mut windowed = p.clone();
    windowed.window = Some(Window::parse("02:00-03:00").expect("window"));
    let closed = advance(&windowed, 0, &members, 12 * 3600, None, false);
    assert!(closed.plan.named.is_empty());
    let open = advance(&windowed, 0, &members, 2 * 3600 + 60, None, false);
    assert_eq!(open.plan.named.len(), 5);
}

#[test]
fn a_soak_holds_a_settled_wave_and_the_plan_completes() {
    let members: Vec<Member> = fleet(20)
        .into_iter()
        .map(|m| Member { tried: true, ..m })
        .collect();
    let p = plan("10%@60,100%", "100%");
    let start = advance(&p, 0, &members, 1000, None, false);
    assert_eq!(
        (start.plan.wave, start.percent, start.settled_since),
        (0, 10, Some(1000))
    );
    assert_eq!(start.waiting, Some("soaking"));
    let later = advance(
        &start.plan,
        start.percent,
        &members,
        1060,
        start.settled_since,
        false,
    );
    assert!(later.plan.complete, "{later:?}");
    assert_eq!(later.percent, 100);
}

#[test]
fn running_the_release_is_not_passing_probation() {
    let members = fleet(50);
    let p = plan("5,100%", "20%");
    let first = advance(&p, 0, &members, 100, None, false);
    // The five run the release (in probation) but have not reported: the wave holds.
    let probation: Vec<Member> = members
        .iter()
        .map(|m| Member {
            running: first.plan.named.contains(&m.id),
            ..m.clone()
        })
        .collect();
    let held = advance(&first.plan, 0, &probation, 160, None, false);
    assert_eq!((held.plan.wave, held.in_flight), (0, 5), "{held:?}");
    // Without any report for the grace period, they stop counting.
    let later = advance(
        &first.plan,
        0,
        &probation,
        100 + PROBATION_GRACE_SECS,
        None,
        false,
    );
    assert_eq!(later.plan.wave, 1, "{later:?}");
}

#[test]
fn silent_workers_do_not_block_and_late_ones_join_the_open_wave() {
    let mut members = fleet(30);
    for m in &mut members[..25] {
        m.alive = false;
    }
    let p = plan("5,100%", "100%");
    let first = advance(&p, 0, &members, 100, None, false);
    // Five alive: named, in flight.
    assert_eq!(first.plan.named.len(), 5);
    let mut done = members.clone();
    for m in &mut done {
        m.tried = first.plan.named.contains(&m.id);
    }
    let second = advance(&first.plan, 0, &done, 200, None, false);
    assert!(second.plan.complete && second.percent == 100, "{second:?}");
}
