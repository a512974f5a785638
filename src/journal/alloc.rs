//! Handing out oids: reservations made durable ahead of use, so no oid is ever handed
//! out twice, across reopens, crashes and other processes.

use super::format::{BlockHeader, BlockKind, BLOCK_HEADER, TRAILER};
use super::Journal;
use crate::error::{Error, Result};
use crate::record::Oid;

/// Oids reserved ahead of use at least, so that most allocations need no write. The
/// reservation grows with what this process has handed out (up to
/// `OID_RESERVE_AHEAD_MAX`), so a busy allocator writes rarely and a process that
/// allocates little leaves only a small gap in the oid space behind it.
const OID_RESERVE_AHEAD: u64 = 64;
const OID_RESERVE_AHEAD_MAX: u64 = 1 << 16;

impl Journal {
    /// Hands out `n` oids that were never handed out before and never will be again,
    /// across reopens and crashes: the reservation is made durable before they return.
    pub fn new_oids(&self, n: u64) -> Result<Vec<Oid>> {
        Ok(self.new_oid_range(n, None)?.map(Oid).collect())
    }

    /// Makes every oid up to and including `last` count as handed out (the next one
    /// handed out is past it), without listing them: an import writes the oids of the
    /// database it copies, which may be many. Reserves only a little ahead of `last`.
    pub(crate) fn allocate_through(&self, last: Oid) -> Result<()> {
        let next = self.read_state().next_oid;
        if last.0 < next {
            return Ok(());
        }
        let n = (last.0 - next)
            .checked_add(1)
            .ok_or(Error::Exhausted { what: "oids" })?;
        self.new_oid_range(n, Some(OID_RESERVE_AHEAD)).map(|_| ())
    }

    /// Hands out `n` oids as a range; `ahead` overrides how far past them to reserve.
    fn new_oid_range(&self, n: u64, ahead: Option<u64>) -> Result<std::ops::Range<u64>> {
        let mut w = self.lock_writer();
        self.check_writable()?;
        {
            let mut st = self.write_state();
            let first = st.next_oid;
            let end = first.checked_add(n).ok_or(Error::Exhausted { what: "oids" })?;
            if end <= st.own_until {
                st.next_oid = end;
                w.handed_out += n;
                return Ok(first..end);
            }
        }
        let _appending = self.lock_appends(&mut w)?;
        let (first, tid, ts, at) = {
            let st = self.read_state();
            // Continue this process's range if no one reserved past it, else start a
            // new one past everything reserved.
            let first = if st.reserved_oid > st.own_until {
                st.reserved_oid
            } else {
                st.next_oid
            };
            (
                first,
                st.last_tid,
                st.last_timestamp,
                w.torn_tail.unwrap_or(st.end),
            )
        };
        let end = first.checked_add(n).ok_or(Error::Exhausted { what: "oids" })?;
        let ahead = ahead.unwrap_or_else(|| {
            w.handed_out
                .clamp(OID_RESERVE_AHEAD, OID_RESERVE_AHEAD_MAX)
                .max(n)
        });
        let reserve_to = end.saturating_add(ahead);
        let h = BlockHeader {
            kind: BlockKind::Reservation,
            len: (BLOCK_HEADER + TRAILER) as u64,
            tid,
            timestamp: ts,
            group_start: at,
            next_oid: reserve_to,
            count: 0,
            aux: 0,
        };
        let mut bytes = h.encode().to_vec();
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_be_bytes());
        self.append_group(&mut w, at, &bytes, BlockKind::Reservation)?;
        {
            let mut st = self.write_state();
            st.end = at + bytes.len() as u64;
            st.reserved_oid = reserve_to;
            st.own_until = reserve_to;
            st.next_oid = end;
        }
        // The header keeps the allocation mark too, so that even a file cut short
        // later never hands these oids out again (see `recovery`).
        self.write_slot(&mut w, None)?;
        w.handed_out += n;
        Ok(first..end)
    }
}
