//! Pure formatting shared by the commands that print for people: aligned columns as kubectl
//! prints them, kubectl-style ages, and revisions shortened for a table cell.

use k8s_openapi::jiff::Timestamp;

use crate::source::Revision;

/// Space between two columns.
const GAP: &str = "   ";

/// `header` and `rows` in aligned columns, each as wide as its widest cell, one line each,
/// without trailing spaces. Rows shorter than the header leave their last cells empty.
#[must_use]
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let mut text = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let cells = widths.iter().enumerate().map(|(column, width)| {
            let cell = row.get(column).map_or("", String::as_str);
            let pad = width - cell.chars().count().min(*width);
            format!("{cell}{}", " ".repeat(pad))
        });
        text.push_str(cells.collect::<Vec<_>>().join(GAP).trim_end());
        text.push('\n');
    }
    text
}

/// `name: value` lines with the values aligned, as `kubectl describe` prints fields.
#[must_use]
pub fn fields(pairs: &[(&str, &str)]) -> String {
    let width = pairs
        .iter()
        .map(|(name, _)| name.chars().count())
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    for (name, value) in pairs {
        let pad = width - name.chars().count();
        text.push_str(name);
        text.push(':');
        text.push_str(&" ".repeat(pad + 2));
        text.push_str(value);
        text.push('\n');
    }
    text
}

/// A duration as kubectl's AGE column shows it (apimachinery's `HumanDuration`): seconds
/// up to two minutes, then `5m3s`, `42m`, `2h5m`, `20h`, `3d4h`, `40d`, `2y30d`, `9y`.
#[must_use]
pub fn human_duration(seconds: i64) -> String {
    // Clocks a second or so apart are "now", as in kubectl.
    if seconds < -1 {
        return "<invalid>".to_owned();
    }
    if seconds < 0 {
        return "0s".to_owned();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return with_remainder(minutes, "m", seconds % 60, "s");
    }
    if minutes < 3 * 60 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return with_remainder(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return with_remainder(days, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        return with_remainder(years, "y", days % 365, "d");
    }
    format!("{years}y")
}

fn with_remainder(whole: i64, unit: &str, rest: i64, rest_unit: &str) -> String {
    if rest == 0 {
        format!("{whole}{unit}")
    } else {
        format!("{whole}{unit}{rest}{rest_unit}")
    }
}

/// How long before `now` an RFC 3339 `time` was, as `human_duration` shows it; `-` when
/// there is no time or it cannot be read.
#[must_use]
pub fn age(time: Option<&str>, now: Timestamp) -> String {
    time.and_then(|t| t.parse::<Timestamp>().ok()).map_or_else(
        || "-".to_owned(),
        |then| human_duration(now.as_second() - then.as_second()),
    )
}

/// A revision short enough for a table cell: `main@sha1:0123456789ab` (12 hex digits, as
/// `Revision::short`); anything that is not a revision is shown as it is.
#[must_use]
pub fn short_revision(revision: &str) -> String {
    let Ok(parsed) = revision.parse::<Revision>() else {
        return revision.to_owned();
    };
    let full = parsed.to_string();
    let cut = full.len() - parsed.digest().len() + parsed.short().len();
    full[..cut].to_owned()
}

/// A commit time (seconds since the Unix epoch) in RFC 3339, UTC.
#[must_use]
pub fn commit_date(seconds: i64) -> String {
    Timestamp::from_second(seconds).map_or_else(|_| seconds.to_string(), |t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (59, "59s"),
            (119, "119s"),
            (120, "2m"),
            (5 * 60 + 3, "5m3s"),
            (9 * 60 + 59, "9m59s"),
            (10 * 60 + 30, "10m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (2 * 3600 + 5 * 60, "125m"),
            (7 * 3600 + 59 * 60, "7h59m"),
            (8 * 3600, "8h"),
            (47 * 3600, "47h"),
            (3 * 86400 + 4 * 3600, "3d4h"),
            (3 * 86400, "3d"),
            (8 * 86400, "8d"),
            (729 * 86400, "729d"),
            (2 * 365 * 86400 + 30 * 86400, "2y30d"),
            (9 * 365 * 86400, "9y"),
        ];
        for (seconds, shown) in cases {
            assert_eq!(human_duration(seconds), shown, "{seconds}s");
        }
    }

    #[test]
    fn age_counts_from_an_rfc3339_time() {
        let now: Timestamp = "2024-05-01T12:00:00Z".parse().unwrap();
        assert_eq!(age(Some("2024-05-01T11:55:00Z"), now), "5m");
        assert_eq!(age(Some("2024-04-28T12:00:00Z"), now), "3d");
        assert_eq!(age(Some("2024-05-01T10:00:00+00:00"), now), "120m");
        assert_eq!(age(Some("2024-05-01T06:00:00+02:00"), now), "8h");
        assert_eq!(age(None, now), "-");
        assert_eq!(age(Some("yesterday"), now), "-");
    }

    #[test]
    fn tables_align_columns_and_trim_line_ends() {
        let rows = vec![
            vec![
                "leaf-cluster-1".to_owned(),
                "211496".to_owned(),
                "Synced".to_owned(),
            ],
            vec!["leaf-2".to_owned(), "9".to_owned(), String::new()],
            vec!["→ short".to_owned()],
        ];
        assert_eq!(
            table(&["CLUSTER", "VERSION", "RESULT"], &rows),
            "CLUSTER          VERSION   RESULT\n\
             leaf-cluster-1   211496    Synced\n\
             leaf-2           9\n\
             → short\n"
        );
        assert_eq!(table(&["A", "B"], &[]), "A   B\n");
    }

    #[test]
    fn fields_align_their_values() {
        assert_eq!(
            fields(&[("revision", "main@sha1:ab"), ("source version", "7")]),
            "revision:        main@sha1:ab\nsource version:  7\n"
        );
        assert_eq!(fields(&[]), "");
    }

    #[test]
    fn revisions_are_shortened_for_tables() {
        let commit = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            short_revision(&format!("main@sha1:{commit}")),
            "main@sha1:0123456789ab"
        );
        assert_eq!(
            short_revision(&format!("sha1:{commit}")),
            "sha1:0123456789ab"
        );
        assert_eq!(short_revision("not a revision"), "not a revision");
    }

    #[test]
    fn commit_dates_are_utc() {
        assert_eq!(commit_date(1_714_564_800), "2024-05-01T12:00:00Z");
    }
}
