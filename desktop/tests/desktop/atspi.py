#!/usr/bin/python3
"""Drives a window through its accessibility tree (AT-SPI), as a screen reader would.

  atspi.py dump APP          prints the visible labels and buttons of APP as JSON
  atspi.py press APP NAME    activates the visible button named NAME

Run with Debian's /usr/bin/python3 (python3-pyatspi), on the session bus of the window.
"""
import json
import sys
import time

import pyatspi


def find_app(name, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        for app in pyatspi.Registry.getDesktop(0):
            if app is not None and app.name == name:
                return app
        time.sleep(0.2)
    sys.exit(f"no application {name!r} on the accessibility bus within {timeout} s")


def text_of(node):
    try:
        t = node.queryText()
        return t.getText(0, t.characterCount)
    except NotImplementedError:
        return ""


def walk(node, out):
    for child in node:
        if child is None:
            continue
        states = child.getState()
        if not states.contains(pyatspi.STATE_VISIBLE):
            continue
        out.append({
            "role": child.getRoleName(),
            "name": child.name,
            "text": text_of(child),
            "focused": states.contains(pyatspi.STATE_FOCUSED),
        })
        walk(child, out)
    return out


def main():
    cmd, app = sys.argv[1], find_app(sys.argv[2])
    if cmd == "dump":
        print(json.dumps(walk(app, [])))
    elif cmd == "press":
        name = sys.argv[3]
        end = time.time() + 30
        while time.time() < end:
            for node in walk_nodes(app):
                if node.getRoleName() in ("push button", "button") and node.name == name:
                    node.queryAction().doAction(0)
                    return
            time.sleep(0.2)
        sys.exit(f"no visible button {name!r} in {sys.argv[2]}")
    else:
        sys.exit(f"unknown command {cmd!r}")


def walk_nodes(node):
    for child in node:
        if child is None or not child.getState().contains(pyatspi.STATE_VISIBLE):
            continue
        yield child
        yield from walk_nodes(child)


if __name__ == "__main__":
    main()
