"""Runs SQL statements for schemas/sql_test.go on an embedded ClickHouse (chdb).

One chdb Session (a private temporary directory) lives as long as the process, so
tables persist across statements. Requests come one JSON object a line on stdin:
{"sql": "..."}; each gets one JSON line on stdout: {"out": base64 of the result in
TabSeparatedWithNamesAndTypes} or {"error": "..."}. The first line out is
{"version": "<server version>"}.

The requests and replies use copies of stdin and stdout: the engine itself
sees /dev/null and stderr there (chdb 2.1.1 reads a waiting stdin as the input
table `table`).
"""

import base64
import json
import os
import shutil
import tempfile

from chdb import session


def main():
    requests = os.fdopen(os.dup(0), "r")
    replies = os.fdopen(os.dup(1), "w")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(2, 1)
    path = tempfile.mkdtemp(prefix="immeter-chdb-")
    try:
        s = session.Session(path)
        version = s.query("SELECT version()", "TabSeparated").bytes().decode().strip()
        reply(replies, {"version": version})
        for line in requests:
            req = json.loads(line)
            try:
                res = s.query(req["sql"], "TabSeparatedWithNamesAndTypes")
                reply(replies, {"out": base64.b64encode(res.bytes()).decode()})
            except Exception as e:  # the engine's error text is the answer
                reply(replies, {"error": str(e)})
    finally:
        shutil.rmtree(path, ignore_errors=True)


def reply(out, obj):
    out.write(json.dumps(obj) + "\n")
    out.flush()


main()
