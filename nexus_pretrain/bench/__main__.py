from nexus_pretrain.bench import main

main()
