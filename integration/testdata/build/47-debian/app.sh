echo "running as $(id -un) in $PWD"
