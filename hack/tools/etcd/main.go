// Command etcd is etcd's own server main, built from a wrapper module: go.etcd.io/etcd/server/v3
// has replace directives, so `go install …@version` refuses it.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
