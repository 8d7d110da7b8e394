//! The line format of the core's log in a Node process: queue-xec's
//! (`DD-MM HH:mm:ss [LEVEL] > message`, local time), so the core's lines read like the JS
//! layer's (`lib/logger.js`). Used by `set_log_level` in `lib.rs`.

use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::registry::LookupSpan;

/// Formats events as queue-xec's Logger did. Local time is UTC plus the offset the JS side
/// gave when logging was set up (Rust's standard library cannot tell the local time zone).
pub(crate) struct QueueXecFormat {
    /// Seconds east of UTC.
    pub(crate) utc_offset_secs: i64,
}

impl<S, N> FormatEvent<S, N> for QueueXecFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2));
        let (day, month, seconds) = local_day_month_seconds(now, self.utc_offset_secs);
        let (label, colour) = match *event.metadata().level() {
            Level::ERROR => ("ERROR", "\x1b[31m"),
            Level::WARN => ("WARN", "\x1b[33m"),
            Level::INFO => ("INFO", ""),
            _ => ("DEBUG", "\x1b[35m"),
        };
        write!(
            writer,
            "{day:02}-{month:02} {:02}:{:02}:{:02} [",
            seconds / 3600,
            seconds / 60 % 60,
            seconds % 60
        )?;
        if writer.has_ansi_escapes() && !colour.is_empty() {
            write!(writer, "{colour}{label}\x1b[0m")?;
        } else {
            writer.write_str(label)?;
        }
        writer.write_str("] > ")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Day of the month, month and seconds into the day of `unix_secs` shifted by `offset_secs`.
fn local_day_month_seconds(unix_secs: i64, offset_secs: i64) -> (u32, u32, i64) {
    let local = unix_secs.saturating_add(offset_secs);
    let (days, seconds) = (local.div_euclid(86_400), local.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days (proleptic Gregorian calendar).
    let z = days + 719_468;
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        u32::try_from(day).unwrap_or(1),
        u32::try_from(month).unwrap_or(1),
        seconds,
    )
}

#[cfg(test)]
mod tests {
    use super::local_day_month_seconds;

    #[test]
    fn dates_and_times_come_out_as_a_calendar_shows_them() {
        // 2024-02-29 23:30:00 UTC, a leap day.
        assert_eq!(local_day_month_seconds(1_709_249_400, 0), (29, 2, 84_600));
        // Two hours east of UTC it is already 1 March, 01:30.
        assert_eq!(local_day_month_seconds(1_709_249_400, 7200), (1, 3, 5400));
        // The epoch, and a day before it (west of UTC).
        assert_eq!(local_day_month_seconds(0, 0), (1, 1, 0));
        assert_eq!(local_day_month_seconds(0, -3600), (31, 12, 82_800));
    }
}
