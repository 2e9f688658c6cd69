"""The built-in ``owner_task`` channel: a step that asks the lead's owner to do something.

A task is an ``activities`` row (type ``task``) for the lead's owner, due when
the step is due, with the rendered subject and text as its note. Useful in a
sequence that mixes automated e-mail with a personal call.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from corecrm.records import MessageChannel


def _send_tasks(messages: Sequence[Mapping[str, Any]], ctx: Mapping[str, Any]) -> list[Any]:
    from corecrm.storage.schema import activities

    rows = [
        {
            "workspace": m["workspace"], "lead_id": m["lead_id"], "type": "task", "owner": m["to"],
            "note": f"{m['subject']}\n\n{m['text']}".strip() if m.get("subject") else m["text"],
            "due_at": ctx["now"], "done": False, "at": ctx["now"],
        }
        for m in messages
    ]  # fmt: skip
    with ctx["engine"].begin() as conn:
        conn.execute(activities.insert(), rows)
    return [{"task_owner": m["to"]} for m in messages]


def owner_task_channel() -> MessageChannel:
    return MessageChannel(name="owner_task", send=_send_tasks, description="A task for the lead's owner (an activities row).")
