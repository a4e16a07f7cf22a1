#!/usr/bin/env python3
"""Cross-checks the hand-written Dart against the generated Dart API, without a Dart SDK.

No Dart compiler runs where tool/check.sh runs, so this catches the mistakes a changed Rust
API would cause in the hand-written code (renamed methods, fields, enum values, named
arguments), by reading the generated files (lib/src/rust/**) as text:

* every `_native.<method>(...)` call in lib/streamguard.dart names a method of the generated
  StreamingProviderManager, with named arguments it declares;
* every `<Enum>.<value>` of a generated enum used anywhere names a value of that enum;
* every constructor call of a generated class (`ManagerConfig(...)`, `StreamEvent(...)`...)
  passes only named arguments the generated constructor declares, and all of its required ones;
* every method a test fake overrides on the generated interfaces exists there.
* every `switch` over a generated enum without a `default:` names all of its values (Dart
  rejects a non-exhaustive switch; a new enum value must reach every such switch).

It is a text check, not a type check: what it cannot see is listed in README.md.
"""

import pathlib
import re
import sys

plugin = pathlib.Path(__file__).resolve().parent.parent
repo = plugin.parent
generated = plugin / "lib/src/rust"
hand_written = sorted(
    [p for p in (plugin / "lib").rglob("*.dart") if generated not in p.parents]
    + list((plugin / "test").rglob("*.dart"))
    + list((repo / "example_app/lib").rglob("*.dart"))
    + list((repo / "example_app/test").rglob("*.dart"))
)

errors = []
types_dart = (generated / "api/types.dart").read_text()
manager_dart = (generated / "api/manager.dart").read_text()
frb_dart = (generated / "frb_generated.dart").read_text()


def strip_comments(text):
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def balanced(text, start):
    """The text between the parenthesis at `start` and its match."""
    depth = 0
    for i in range(start, len(text)):
        c = text[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
    raise ValueError("unbalanced")


def top_level_named_args(args):
    """Names of `name:` arguments at nesting depth 0 (not the `:` of a `?:` conditional)."""
    names, depth, pending_ternaries, i = [], 0, 0, 0
    while i < len(args):
        c = args[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c in "'\"":
            quote = c
            i += 1
            while i < len(args) and args[i] != quote:
                i += 2 if args[i] == "\\" else 1
        elif depth == 0 and c == "?" and args[i + 1 : i + 2].isspace():
            pending_ternaries += 1
        elif depth == 0 and c == ":" and pending_ternaries:
            pending_ternaries -= 1
        elif depth == 0 and (c.isalpha() or c == "_") and (i == 0 or not (args[i - 1].isalnum() or args[i - 1] in "_.$")):
            m = re.match(r"([A-Za-z_]\w*)\s*:(?!:)", args[i:])
            if m and not pending_ternaries:
                names.append(m.group(1))
                i += m.end()
                continue
            word = re.match(r"\w+", args[i:])
            i += word.end()
            continue
        i += 1
    return names


# ----- generated declarations -------------------------------------------------------------
enums = {}
for m in re.finditer(r"^enum (\w+) \{(.*?)^\s*;", types_dart, re.S | re.M):
    body = strip_comments(m.group(2))
    enums[m.group(1)] = set(re.findall(r"(\w+)\s*,", body))

classes = {}  # name -> (all named params, required named params)
for m in re.finditer(r"^class (\w+) [^{]*\{", types_dart, re.M):
    name = m.group(1)
    ctor = re.search(r"(?:const )?%s\(\{(.*?)\}\);" % name, types_dart[m.end() :], re.S)
    if not ctor:
        continue
    params = re.findall(r"(required )?this\.(\w+)", ctor.group(1))
    classes[name] = ({p for _, p in params}, {p for r, p in params if r})

def param_names(params):
    """Names declared in a Dart parameter list body (`required String a , int b`)."""
    names, depth, part = [], 0, ""
    for c in params + ",":
        if c in "(<[":
            depth += 1
        elif c in ")>]":
            depth -= 1
        if c == "," and depth == 0:
            m = re.search(r"(\w+)\s*(?:=.*)?$", part.strip())
            if m:
                names.append(m.group(1))
            part = ""
        else:
            part += c
    return set(names)


methods = {}  # generated StreamingProviderManager methods -> declared named params
for m in re.finditer(
    r"^\s*(?:static\s+)?(?:Future<.*?>|Stream<.*?>|void|int|bool)\s+(\w+)\((\{[^}]*\}|)\)\s*(?:;|=>)",
    manager_dart,
    re.M,
):
    params = m.group(2).strip()
    methods[m.group(1)] = param_names(params[1:-1]) if params.startswith("{") else set()
opaque_members = {"dispose", "isDisposed"}
api_methods = set(re.findall(r"^\s*(?:Future<.*?>|Stream<.*?>|ManagerConfig)\s+(crateApi\w+)\(", frb_dart, re.M))

if not enums or not classes or not methods:
    sys.exit("dart_api_check: could not read the generated API (layout changed?)")

# ----- the checks ---------------------------------------------------------------------------
for path in hand_written:
    rel = path.relative_to(repo)
    text = strip_comments(path.read_text())

    for m in re.finditer(r"\b(%s)\.(\w+)" % "|".join(enums), text):
        enum, value = m.groups()
        if value not in enums[enum] and value not in ("values", "name", "index"):
            errors.append(f"{rel}: {enum}.{value} is not a value of the generated enum {enum}")

    for m in re.finditer(r"(?<![\w.])(?:const\s+)?(%s)\(" % "|".join(classes), text):
        cls = m.group(1)
        before = text[max(0, m.start() - 40) : m.start()]
        if re.search(r"(class|implements|extends|<|\bis|\bas)\s*$", before):
            continue
        args = balanced(text, m.end() - 1)
        named = top_level_named_args(args)
        allowed, required = classes[cls]
        for n in named:
            if n not in allowed:
                errors.append(f"{rel}: {cls}({n}: ...) but the generated constructor has no `{n}`")
        for r in required - set(named):
            errors.append(f"{rel}: {cls}(...) lacks the required argument `{r}`")

    for m in re.finditer(r"(?:_native|native\.StreamingProviderManager)\.(\w+)\(", text):
        method = m.group(1)
        if method in opaque_members:
            continue
        if method not in methods:
            errors.append(f"{rel}: the generated StreamingProviderManager has no method `{method}`")
            continue
        for n in top_level_named_args(balanced(text, m.end() - 1)):
            if n not in methods[method]:
                errors.append(f"{rel}: `{method}` has no named argument `{n}`")

    for m in re.finditer(r"\bswitch\s*\(", text):
        brace = text.find("{", m.end())
        if brace < 0:
            continue
        body = balanced(text, brace)
        cases = re.findall(r"\bcase\s+(%s)\.(\w+)\s*:" % "|".join(enums), body)
        kinds = {enum for enum, _ in cases}
        if len(kinds) != 1 or re.search(r"\bdefault\s*:", body):
            continue
        enum = kinds.pop()
        missing = enums[enum] - {value for _, value in cases}
        if missing:
            line = text.count("\n", 0, m.start()) + 1
            errors.append(
                f"{rel}:{line}: switch over {enum} lacks {', '.join(sorted(missing))} "
                "(not exhaustive)"
            )

    # Fakes of the generated interfaces (tests).
    for cls in re.finditer(r"class \w+ implements (native\.StreamingProviderManager|RustLibApi) \{", text):
        body = balanced(text, cls.end() - 1)
        for m in re.finditer(r"@override\s+[\w<>?,\s.]+?\s(\w+)\s*(?:\(|=>|\{)", body):
            name = m.group(1)
            if name == "noSuchMethod":
                continue
            known = api_methods if cls.group(1) == "RustLibApi" else set(methods) | opaque_members
            if name not in known:
                errors.append(f"{rel}: fake overrides `{name}`, which {cls.group(1)} does not declare")

if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(f"dart_api_check: {len(errors)} mismatch(es) between hand-written and generated Dart")
print(
    f"dart_api_check: {len(hand_written)} hand-written Dart files agree with the generated API "
    f"({len(methods)} methods, {len(classes)} classes, {len(enums)} enums)"
)
