-- dead_letters keyed by the source partition's epoch too (partition_epochs):
-- a topic deleted and created again starts its offsets from 0, and a dead
-- letter of the new topic at an offset an old one had replaced the old one's
-- row at the next merge. A replay of the same dead letter (same epoch and
-- offset) still replaces its row. Rows written before have src_epoch 0.
--
-- The column has no DEFAULT: a column added to the sorting key in the same
-- ALTER must not have one. 18.16 has no ADD COLUMN IF NOT EXISTS, so a run
-- cut short after the ALTER is finished by schemas.migrationDone.
ALTER TABLE dead_letters ADD COLUMN src_epoch UInt32,
    MODIFY ORDER BY (src_topic, src_partition, src_offset, src_epoch);
