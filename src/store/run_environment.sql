-- Migration 4: what a run was trained with beyond the project's commit, as JSON
-- (`RunEnvironment`: labbook's version and build commit, CPU model and threads, GPU).
-- Older runs have NULL.
ALTER TABLE runs ADD COLUMN environment TEXT;
