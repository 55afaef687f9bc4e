"""The package's shape: no function or method longer than `MAX_CODE_LINES` code lines, no import cycle (imports
at module level and inside functions alike), and imports pointing one way between the layers.

The known exceptions are listed by name below, each to be removed when its part is rewritten; an entry that no
longer applies fails its own test, so the lists only shrink.
"""

from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "pkdot_jax"
MAX_CODE_LINES = 60

# "module:qualified name" of functions allowed to be longer than MAX_CODE_LINES (none).
LONG_FUNCTIONS_ALLOWED: frozenset[str] = frozenset()
# (importer, imported) edges allowed to close an import cycle (none).
CYCLE_EDGES_ALLOWED: frozenset[tuple[str, str]] = frozenset()
# Layers: a module of the key's sub-package never imports one of the listed ones.
FORBIDDEN_IMPORTS = {
    "models": ("train", "study", "main", "cli"),
    "losses": ("train", "study", "models", "data", "main", "cli"),
    "train": ("study", "main", "cli"),
}


# ------------------------------------------------------------------------------------------------ modules
def _modules() -> dict[str, str]:
  """Module name -> path of every module of the package (a package's name for its __init__.py)."""
  modules = {}
  for directory, _, files in os.walk(os.path.join(ROOT, PACKAGE)):
    for name in files:
      if not name.endswith(".py"):
        continue
      path = os.path.join(directory, name)
      parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
      if parts[-1] == "__init__":
        parts = parts[:-1]
      modules[".".join(parts)] = path
  return modules


MODULES = _modules()


def _tree(module: str) -> ast.Module:
  with open(MODULES[module]) as f:
    return ast.parse(f.read(), MODULES[module])


# ---------------------------------------------------------------------------------------------- code lines
def _docstring_lines(node: ast.AST) -> set[int]:
  body = getattr(node, "body", None)
  if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
      and isinstance(body[0].value.value, str):
    return set(range(body[0].lineno, body[0].end_lineno + 1))
  return set()


def code_lines(node: ast.AST, source_lines: list[str]) -> int:
  """Lines of a function that hold code: not blank, not a comment alone, not a docstring (its own or a nested
  function's or class's)."""
  docstrings: set[int] = set()
  for inner in ast.walk(node):
    if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
      docstrings |= _docstring_lines(inner)
  count = 0
  for number in range(node.lineno, node.end_lineno + 1):
    text = source_lines[number - 1].strip()
    if text and not text.startswith("#") and number not in docstrings:
      count += 1
  return count


def _functions(tree: ast.AST, prefix: str = ""):
  """(qualified name, node) of every function and method, nested ones included."""
  for node in ast.iter_child_nodes(tree):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      yield prefix + node.name, node
      yield from _functions(node, prefix + node.name + ".")
    elif isinstance(node, ast.ClassDef):
      yield from _functions(node, prefix + node.name + ".")
    else:
      yield from _functions(node, prefix)


def long_functions() -> dict[str, str]:
  """"module:name" -> "path:line (n code lines)" of every function over MAX_CODE_LINES."""
  found = {}
  for module, path in sorted(MODULES.items()):
    with open(path) as f:
      source = f.read()
    lines = source.splitlines()
    for name, node in _functions(ast.parse(source, path)):
      n = code_lines(node, lines)
      if n > MAX_CODE_LINES:
        found[f"{module}:{name}"] = f"{os.path.relpath(path, ROOT)}:{node.lineno} ({n} code lines)"
  return found


def test_code_lines_counts_code_only():
  source = ('def f(x):\n  """Doc.\n\n  More doc."""\n  # a comment\n\n  y = x  # trailing comment\n'
            '  def g():\n    """Inner doc."""\n    return y\n  return g\n')
  node = ast.parse(source).body[0]
  assert code_lines(node, source.splitlines()) == 5  # def f, y = x, def g, return y, return g


def test_no_function_is_too_long():
  offenders = {name: where for name, where in long_functions().items() if name not in LONG_FUNCTIONS_ALLOWED}
  assert not offenders, (f"functions over {MAX_CODE_LINES} code lines (split them):\n"
                         + "\n".join(f"  {where} {name}" for name, where in sorted(offenders.items())))


def test_long_function_allow_list_is_current():
  stale = sorted(LONG_FUNCTIONS_ALLOWED - set(long_functions()))
  assert not stale, f"no longer over {MAX_CODE_LINES} code lines (remove from LONG_FUNCTIONS_ALLOWED): {stale}"


# ------------------------------------------------------------------------------------------------ imports
def _resolve(module: str, node: ast.ImportFrom) -> str:
  if not node.level:
    return node.module or ""
  base = module.split(".")
  is_package = MODULES[module].endswith("__init__.py")
  base = base[:len(base) - node.level + (1 if is_package else 0)]
  return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str) -> set[str]:
  """The package's modules that `module` imports anywhere in its body (module level or inside functions):
  `from a import b` imports the module a.b when there is one, else a."""
  found = set()
  for node in ast.walk(_tree(module)):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      target = _resolve(module, node)
      names = [f"{target}.{alias.name}" if f"{target}.{alias.name}" in MODULES else target for alias in node.names]
    else:
      continue
    for name in names:
      while name and name not in MODULES:  # `import a.b.c` of a package's attribute: its deepest module
        name = name.rpartition(".")[0]
      if name.startswith(PACKAGE) and name != module:
        found.add(name)
  return found


def import_graph() -> dict[str, set[str]]:
  return {module: imports_of(module) for module in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One cycle of `graph` as [a, b, ..., a], or None when it has none (depth-first search)."""
  state: dict[str, int] = {}  # 1: on the current path, 2: done
  path: list[str] = []

  def visit(node: str) -> list[str] | None:
    state[node] = 1
    path.append(node)
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == 1:
        return path[path.index(nxt):] + [nxt]
      if nxt not in state:
        cycle = visit(nxt)
        if cycle:
          return cycle
    path.pop()
    state[node] = 2
    return None

  for node in sorted(graph):
    if node not in state:
      cycle = visit(node)
      if cycle:
        return cycle
  return None


def test_find_cycle_names_the_cycle():
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]


def test_imports_of_reads_function_level_and_relative_imports():
  assert "pkdot_jax.main" in imports_of("pkdot_jax.cli")  # inside a function
  assert "pkdot_jax.train.loop" in imports_of("pkdot_jax.study.sweep")  # `from pkdot_jax.train import loop`


def test_no_import_cycle():
  graph = {module: {m for m in targets if (module, m) not in CYCLE_EDGES_ALLOWED}
           for module, targets in import_graph().items()}
  cycle = find_cycle(graph)
  assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_cycle_allow_list_is_current():
  graph = import_graph()
  stale = sorted(edge for edge in CYCLE_EDGES_ALLOWED if edge[1] not in graph.get(edge[0], set()))
  assert not stale, f"imports no longer made (remove from CYCLE_EDGES_ALLOWED): {stale}"


@pytest.mark.parametrize("layer", sorted(FORBIDDEN_IMPORTS))
def test_layers_import_one_way(layer):
  forbidden = tuple(f"{PACKAGE}.{name}" for name in FORBIDDEN_IMPORTS[layer])
  bad = sorted(f"{module} imports {target}" for module, targets in import_graph().items()
               if module.startswith(f"{PACKAGE}.{layer}.") or module == f"{PACKAGE}.{layer}"
               for target in targets if target in forbidden or target.startswith(tuple(f + "." for f in forbidden)))
  assert not bad, "\n".join(bad)
