from volgen.cli import entry

entry()
