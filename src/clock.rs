//! The one clock durus timestamps transactions with.

/// Microseconds since the Unix epoch, as transactions are timestamped; 0 if the clock
/// is set before 1970.
pub(crate) fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
