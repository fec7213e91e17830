//! Snapshot tests (filled below).
