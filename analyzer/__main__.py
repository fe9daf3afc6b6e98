from analyzer.cli.startup import console

console()
