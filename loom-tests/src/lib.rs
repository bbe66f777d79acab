//! loom models of lanebus live in `tests/`; this crate has no code of its
//! own. Run them with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release`.
