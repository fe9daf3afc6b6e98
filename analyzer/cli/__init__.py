"""The command line: argument parsing, printing, progress and exit codes. Nothing imports it
except the console script; it only calls the library's API."""
