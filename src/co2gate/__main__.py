from co2gate.cli import main

main()
