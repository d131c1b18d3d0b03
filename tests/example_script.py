"""The example workers' scripted model, shared by the tests that run them on the real plugins.

The thread's flow: the caller asks for programs, ``get_programs`` runs and awaits the
``CollectAgeGender`` AgentTask, which asks for the child's age and gender; the caller answers,
the task records them, and the front desk answers with the tool's output.
"""

from __future__ import annotations

from collections.abc import Sequence

from openai_server import Message, Reply, ToolCall

QUESTION = "What programs do you have for my child?"
CHILD = "Seven, a boy."
TASK_QUESTION = "How old is your child, and is it a boy or a girl?"
FINAL_ANSWER = "For a seven year old boy we have Giants, Hustlers and Avengers."
PROGRAMS = "Programs for a 7 year old male: Giants, Hustlers, Avengers"
AGAIN = "Sorry, could you say that again?"
TASK_INSTRUCTIONS = "You collect the age and gender of the child"


def front_desk(messages: Sequence[Message]) -> Reply:
    """The model of both example workers: the thread's flow, asking for the child's details."""
    system = " ".join(m.text for m in messages if m.role in ("system", "developer"))
    last = messages[-1] if messages else Message("user", "")
    if TASK_INSTRUCTIONS in system:  # CollectAgeGender
        if last.role == "function_call_output" and last.name != "get_programs":
            return Reply()  # after record_child_profile the task is over
        if last.role == "user" and "seven" in last.text.lower():
            return Reply(
                tool_calls=(ToolCall("record_child_profile", {"age": 7, "gender": "male"}),)
            )
        return Reply(text=TASK_QUESTION)
    if last.role == "user" and "program" in last.text.lower():
        return Reply(tool_calls=(ToolCall("get_programs"),))
    outputs = [
        m.text for m in messages if m.role == "function_call_output" and m.name == "get_programs"
    ]
    # the tool's reply: its output, after the AgentTask's conversation was merged in
    tool_reply = last.role == "function_call_output" or "seven" in last.text.lower()
    if outputs and outputs[-1].startswith("Programs for") and tool_reply:
        return Reply(text=FINAL_ANSWER)
    return Reply(text=AGAIN)
