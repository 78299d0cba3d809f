module cio.bench/go_tasks

go 1.19
