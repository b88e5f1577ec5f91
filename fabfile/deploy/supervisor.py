"""supervisord by XML-RPC: the shell pipelines that read a program's state and signal or start it.

supervisorctl is a Python program that takes ~0.15 s to start on a small host; the state read and the
reload that every deploy and rollback runs ask supervisord directly, as supervisorctl does: XML-RPC on
its unix socket (Debian's /var/run/supervisor.sock, root only), with curl. The reply is Python's
xmlrpc.client marshalling (one tag run per line), read with sed once the newlines are gone.
Pure: each function returns shell text, every value quoted.
"""
from __future__ import annotations

import re
import shlex
import xmlrpc.client

q = shlex.quote

SUPERVISOR_SOCKET = "/var/run/supervisor.sock"


def supervisor_rpc(method: str, *params: str | bool) -> str:
    """A shell pipeline printing supervisord's XML-RPC reply to `method(params)` on one line (root only)."""
    body = xmlrpc.client.dumps(tuple(params), methodname=method)
    return (shlex.join(["curl", "-sS", "--unix-socket", SUPERVISOR_SOCKET, "-H", "Content-Type: text/xml",
                        "--data-binary", body, "http://localhost/RPC2"]) + " 2>&1 | tr -d '\\n'")


def _xml_member(var: str, name: str, kind: str, pattern: str) -> str:
    """sed reading struct member `name` (an xmlrpc <kind>) out of the reply in $var."""
    return (f"printf %s \"${var}\" | sed -n "
            + q(f"s:.*<name>{name}</name><value><{kind}>\\({pattern}\\)</{kind}></value>.*:\\1:p"))


def supervisor_signal(program: str, signal: str) -> str:
    """`supervisorctl signal SIGNAL PROGRAM` by XML-RPC: prints `PROGRAM: signalled`, or `ERROR (<fault>)`
    and exits 1 (not running, no such process, supervisord down)."""
    if not re.fullmatch(r"[A-Z0-9]+", signal):
        raise ValueError(f"bad signal name {signal!r}")
    fault = _xml_member("x", "faultString", "string", "[^<]*")
    return (f"x=$({supervisor_rpc('supervisor.signalProcess', program, signal)}); "
            f"case \"$x\" in *'<boolean>1</boolean>'*) echo {q(program + ': signalled')};; "
            f"*) f=$({fault}); echo \"ERROR (${{f:-$x}})\"; exit 1;; esac")


def supervisor_status(program: str) -> str:
    """Sets $w (RUNNING, STOPPED, BACKOFF, ... ERROR when there is no such program) and $pid (maybe empty)."""
    return "\n".join([
        f"x=$({supervisor_rpc('supervisor.getProcessInfo', program)})",
        f"w=$({_xml_member('x', 'statename', 'string', '[A-Z]*')})",
        f"pid=$({_xml_member('x', 'pid', 'int', '[0-9]*')})",
        '[ -n "$w" ] || w=ERROR',
        '[ "$pid" != 0 ] || pid=',
    ])
