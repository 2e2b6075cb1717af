from co2gate.launch import main

main()
