//! One send of one issue, the use case: check it, plan its audience (the list, the
//! subscribers, the suppressions, what an earlier run sent, the warm-up and the relays' daily
//! limits), make the messages (personalized and signed on every core), hand them to the
//! delivery engine (`crate::deliver`), record every message in the ledger, settle the
//! suppressions, and say what happened through [`report::Say`]. It prints nothing.

pub mod delivery;
pub mod pool;
pub mod queue;
pub mod recorder;
pub mod report;
pub mod reputation;
pub mod session;
