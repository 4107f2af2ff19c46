from conductor_worker.commands.cli import main

main()
