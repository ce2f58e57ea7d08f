from slmops.cli import console

console()
