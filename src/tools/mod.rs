//! Whole-store tools for operators, as the `durus` command line uses them: what is
//! in a journal file ([`info`](info::info)), how many objects of each type it holds
//! ([`census`](census::census)), its records decoded ([`dump`](dump::dump)) and the
//! versions of one object ([`history`](dump::history)), and a verified copy of it
//! ([`backup`](backup::backup)), and a copy of a whole store into another of any kind
//! ([`copy`](copy::copy)).

pub mod backup;
pub mod census;
pub mod copy;
pub mod dump;
pub mod info;
