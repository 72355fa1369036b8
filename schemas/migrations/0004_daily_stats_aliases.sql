-- daily_stats as 0003 now creates it: the same view, with its two joined
-- subqueries named, as current releases require (Code: 206,
-- ALIAS_REQUIRED). Replaces the view of databases migrated by the 0003 of
-- before (18.16 accepted it). DROP TABLE, not DROP VIEW: 18.16 has no DROP VIEW.
DROP TABLE IF EXISTS daily_stats;

CREATE VIEW IF NOT EXISTS daily_stats AS
SELECT
    app,
    day,
    active_users,
    logins,
    messages_c2c,
    messages_group,
    messages_community,
    messages_live,
    groups_created,
    groups_dissolved,
    toInt64(groups_created) - toInt64(groups_dissolved) AS groups_net,
    calls_audio,
    calls_video,
    call_seconds_audio,
    call_seconds_video,
    duplicates
FROM
(
    SELECT
        app,
        day,
        sum(logins) AS logins,
        sum(messages_c2c) AS messages_c2c,
        sum(messages_group) AS messages_group,
        sum(messages_community) AS messages_community,
        sum(messages_live) AS messages_live,
        sum(groups_created) AS groups_created,
        sum(groups_dissolved) AS groups_dissolved,
        sum(calls_audio) AS calls_audio,
        sum(calls_video) AS calls_video,
        sum(call_seconds_audio) AS call_seconds_audio,
        sum(call_seconds_video) AS call_seconds_video,
        sum(duplicates) AS duplicates
    FROM
    (
        SELECT
            app,
            day,
            src_partition,
            argMax(logins, version) AS logins,
            argMax(messages_c2c, version) AS messages_c2c,
            argMax(messages_group, version) AS messages_group,
            argMax(messages_community, version) AS messages_community,
            argMax(messages_live, version) AS messages_live,
            argMax(groups_created, version) AS groups_created,
            argMax(groups_dissolved, version) AS groups_dissolved,
            argMax(calls_audio, version) AS calls_audio,
            argMax(calls_video, version) AS calls_video,
            argMax(call_seconds_audio, version) AS call_seconds_audio,
            argMax(call_seconds_video, version) AS call_seconds_video,
            argMax(duplicates, version) AS duplicates
        FROM daily_usage
        GROUP BY app, day, src_partition
    )
    GROUP BY app, day
) AS counters
ANY LEFT JOIN
(
    SELECT app, day, uniqExact(user) AS active_users
    FROM user_days
    GROUP BY app, day
) AS users USING (app, day);
