//! The server's answers for people: tables with left-aligned columns, expiry in words, and
//! server-supplied text made safe for one terminal line.

use manifests::Timestamp;
use serde_json::Value;

pub(super) fn format_status(status: &Value, now: Timestamp) -> String {
    let mut out = String::new();
    out.push_str("channels\n");
    out.push_str(&indent(&format_channels(list(status, "channels"), now)));
    let waves = format_waves(list(status, "channels"));
    if !waves.is_empty() {
        out.push_str("\nrollout plans\n");
        out.push_str(&indent(&waves));
    }
    out.push_str("\nfleet by version\n");
    let fleet: Vec<Vec<String>> = list(status, "fleet")
        .iter()
        .map(|f| {
            vec![
                text(f, "channel"),
                text(f, "version"),
                text(f, "workers"),
                text(f, "stale"),
            ]
        })
        .collect();
    out.push_str(&indent(&table(
        &["CHANNEL", "VERSION", "WORKERS", "STALE"],
        &fleet,
    )));
    out.push_str("\nfailures in the last hour\n");
    let failures: Vec<Vec<String>> = list(status, "failures_last_hour")
        .iter()
        .map(|f| {
            vec![
                text(f, "channel"),
                text(f, "version"),
                text(f, "outcome"),
                text(f, "reason"),
                text(f, "count"),
            ]
        })
        .collect();
    out.push_str(&indent(&table(
        &["CHANNEL", "VERSION", "OUTCOME", "REASON", "COUNT"],
        &failures,
    )));
    // Releases a rotation left without a valid signature: no channel offers them until they
    // are re-signed and published again.
    for release in list(status, "untrusted_releases") {
        out.push_str(&format!(
            "\nuntrusted release {}: {}\n",
            text(release, "version"),
            text(release, "problem")
        ));
    }
    out.push_str(&format!(
        "\ntotal workers: {}\nroot version: {}\n",
        text(status, "workers_total"),
        text(status, "root_version")
    ));
    out
}

/// Channel summaries as a table.
pub(super) fn format_channels(channels: &[Value], now: Timestamp) -> String {
    let rows: Vec<Vec<String>> = channels
        .iter()
        .map(|c| {
            let mut version = text(c, "version");
            if c.get("rollback_to").is_some_and(|v| !v.is_null()) {
                version.push_str(" (rollback)");
            }
            let rollout = match c.get("percent") {
                Some(Value::Number(n)) => format!("{n}%"),
                _ => "-".to_owned(),
            };
            let halted = if c.get("halted").and_then(Value::as_bool) == Some(true) {
                match c.get("halt_reason").and_then(Value::as_str) {
                    Some(reason) if !reason.trim().is_empty() => {
                        format!("yes: {}", sanitize(reason))
                    }
                    _ => "yes".to_owned(),
                }
            } else {
                "no".to_owned()
            };
            let expires = match c.get("expires").and_then(Value::as_str) {
                Some(expires) => expires_in(expires, now),
                None => "-".to_owned(),
            };
            vec![
                text(c, "channel"),
                version,
                rollout,
                halted,
                text(c, "serial"),
                expires,
            ]
        })
        .collect();
    table(
        &[
            "CHANNEL",
            "VERSION",
            "ROLLOUT",
            "HALTED",
            "SERIAL",
            "EXPIRES IN",
        ],
        &rows,
    )
}

/// The channels that roll out in waves, as a table (empty when none does): the current wave,
/// its state, workers in flight against the bound, when the next wave opens, and the plan.
pub(super) fn format_waves(channels: &[Value]) -> String {
    let rows: Vec<Vec<String>> = channels
        .iter()
        .filter_map(|c| {
            let wave = c.get("wave").filter(|w| w.is_object())?;
            let mut state = text(wave, "state");
            if let Some(why) = wave.get("waiting").and_then(Value::as_str) {
                if state == "rolling" || state == "held" {
                    state = format!("{state}: {}", sanitize(why));
                }
            }
            Some(vec![
                text(c, "channel"),
                format!("{}/{}", text(wave, "number"), text(wave, "of")),
                text(wave, "step"),
                state,
                format!(
                    "{}/{}",
                    text(wave, "in_flight"),
                    text(wave, "max_in_flight")
                ),
                text(wave, "named"),
                text(wave, "next_step_at"),
                text(wave, "window"),
                text(wave, "spec"),
            ])
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    table(
        &[
            "CHANNEL",
            "WAVE",
            "STEP",
            "STATE",
            "IN FLIGHT",
            "NAMED",
            "NEXT STEP AT",
            "WINDOW",
            "PLAN",
        ],
        &rows,
    )
}

/// `channel list`: one row per created channel.
pub(super) fn format_channel_list(answer: &Value) -> String {
    let rows: Vec<Vec<String>> = list(answer, "channels")
        .iter()
        .map(|c| {
            ["channel", "version", "workers"]
                .iter()
                .map(|field| text(c, field))
                .collect()
        })
        .collect();
    table(&["CHANNEL", "VERSION", "WORKERS"], &rows)
}

pub(super) fn format_audit(audit: &Value) -> String {
    let rows: Vec<Vec<String>> = list(audit, "entries")
        .iter()
        .map(|e| {
            ["at", "kind", "actor", "channel", "version", "detail"]
                .iter()
                .map(|field| text(e, field))
                .collect()
        })
        .collect();
    table(
        &["AT", "KIND", "ACTOR", "CHANNEL", "VERSION", "DETAIL"],
        &rows,
    )
}

/// "2d 3h", "5h 12m", "12m", "40s", or "EXPIRED".
fn expires_in(expires: &str, now: Timestamp) -> String {
    let Ok(at) = expires.parse::<Timestamp>() else {
        return sanitize(expires);
    };
    let secs = at.unix() - now.unix();
    if secs <= 0 {
        return "EXPIRED".to_owned();
    }
    let (days, hours, minutes) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes}m")
    } else if minutes > 0 {
        format!("{minutes}m")
    } else {
        format!("{secs}s")
    }
}

/// Left-aligned columns two spaces apart; "(none)" without rows.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return "(none)\n".to_owned();
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.extend(std::iter::repeat_n(
                ' ',
                width.saturating_sub(cell.chars().count()),
            ));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn indent(text: &str) -> String {
    text.lines().map(|line| format!("  {line}\n")).collect()
}

fn list<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// A field for display: strings bare, booleans yes/no, null, empty or missing as "-".
pub(super) fn text(value: &Value, key: &str) -> String {
    match value.get(key) {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) if s.is_empty() => "-".to_owned(),
        Some(Value::String(s)) => sanitize(s),
        Some(Value::Bool(b)) => if *b { "yes" } else { "no" }.to_owned(),
        Some(other) => sanitize(&other.to_string()),
    }
}

/// Server-supplied text, made safe for one terminal line.
pub(super) fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

pub(super) fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn status_json() -> Value {
        json!({
            "root_version": 2,
            "channels": [
                {"channel": "canary", "version": "1.4.0", "percent": 100, "halted": false,
                 "halt_reason": null, "serial": 7, "issued_at": "2026-03-01T00:00:00Z",
                 "expires": "2026-03-02T00:00:00Z", "minimum_version": "0.0.0",
                 "recommended_version": "1.4.0", "urgent": false, "rollback_to": null},
                {"channel": "stable", "version": "1.3.2", "percent": 10, "halted": true,
                 "halt_reason": "canary failures", "serial": 12,
                 "issued_at": "2026-02-28T00:00:00Z", "expires": "2026-02-28T12:00:00Z",
                 "minimum_version": "0.0.0", "recommended_version": "1.3.2", "urgent": false,
                 "rollback_to": "1.3.2"}
            ],
            "fleet": [
                {"channel": "canary", "version": "1.4.0", "workers": 2, "stale": 0},
                {"channel": "stable", "version": "1.3.2", "workers": 1, "stale": 1}
            ],
            "failures_last_hour": [],
            "workers_total": 3
        })
    }

    #[test]
    fn status_tables() {
        let now: Timestamp = "2026-03-01T01:30:00Z".parse().unwrap();
        let expected = "\
channels
  CHANNEL  VERSION           ROLLOUT  HALTED                SERIAL  EXPIRES IN
  canary   1.4.0             100%     no                    7       22h 30m
  stable   1.3.2 (rollback)  10%      yes: canary failures  12      EXPIRED

fleet by version
  CHANNEL  VERSION  WORKERS  STALE
  canary   1.4.0    2        0
  stable   1.3.2    1        1

failures in the last hour
  (none)

total workers: 3
root version: 2
";
        assert_eq!(format_status(&status_json(), now), expected);
    }

    #[test]
    fn waves_are_a_table_of_their_own() {
        let mut status = status_json();
        status["channels"][0]["wave"] = json!({"number": 2, "of": 4, "step": "10%@3600s",
            "spec": "5,10%@1h,50%@4h,100%@1d", "state": "soaking", "named": 5, "in_flight": 0,
            "max_in_flight": "20%", "window": null, "next_step_at": "2026-03-01T02:00:00Z",
            "waiting": "soaking"});
        let out = format_status(&status, "2026-03-01T01:30:00Z".parse().unwrap());
        assert!(out.contains("\nrollout plans\n  CHANNEL  WAVE  STEP       STATE    IN FLIGHT  NAMED  NEXT STEP AT          WINDOW  PLAN\n  canary   2/4   10%@3600s  soaking  0/20%      5      2026-03-01T02:00:00Z  -       5,10%@1h,50%@4h,100%@1d\n"), "{out}");
        assert_eq!(format_waves(list(&status_json(), "channels")), "");
    }

    #[test]
    fn status_tolerates_missing_fields() {
        let now: Timestamp = "2026-03-01T00:00:00Z".parse().unwrap();
        let status = json!({
            "channels": [{"channel": "beta", "version": null, "halted": false}],
            "failures_last_hour": [{"channel": "beta", "version": "1.0.0",
                "outcome": "failure", "reason": "hash_mismatch\nx", "count": 4}]
        });
        let out = format_status(&status, now);
        assert!(
            out.contains("  beta     -        -        no      -       -\n"),
            "{out}"
        );
        assert!(
            out.contains("  beta     1.0.0    failure  hash_mismatch x  4\n"),
            "{out}"
        );
        assert!(out.contains("total workers: -\n"), "{out}");
    }

    #[test]
    fn audit_table() {
        let audit = json!({"entries": [
            {"at": "2026-03-01T00:00:05Z", "kind": "report", "actor": "w-1", "channel": "canary",
             "version": "1.4.0", "detail": "failure hash_mismatch 1.3.2->1.4.0 w-1"},
            {"at": "2026-03-01T00:00:00Z", "kind": "promote", "actor": "admin",
             "channel": "canary", "version": "1.4.0", "detail": ""}
        ]});
        let expected = "\
AT                    KIND     ACTOR  CHANNEL  VERSION  DETAIL
2026-03-01T00:00:05Z  report   w-1    canary   1.4.0    failure hash_mismatch 1.3.2->1.4.0 w-1
2026-03-01T00:00:00Z  promote  admin  canary   1.4.0    -
";
        assert_eq!(format_audit(&audit), expected);
        assert_eq!(format_audit(&json!({"entries": []})), "(none)\n");
    }

    #[test]
    fn expiry_in_words() {
        let now: Timestamp = "2026-03-01T00:00:00Z".parse().unwrap();
        assert_eq!(expires_in("2026-03-03T05:00:00Z", now), "2d 5h");
        assert_eq!(expires_in("2026-03-01T05:07:00Z", now), "5h 7m");
        assert_eq!(expires_in("2026-03-01T00:12:30Z", now), "12m");
        assert_eq!(expires_in("2026-03-01T00:00:40Z", now), "40s");
        assert_eq!(expires_in("2026-03-01T00:00:00Z", now), "EXPIRED");
        assert_eq!(expires_in("tomorrow", now), "tomorrow");
    }

    #[test]
    fn long_bodies_are_truncated() {
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
