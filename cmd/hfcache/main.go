// Command hfcache is a peer-to-peer cluster cache for Hugging Face Hub
// content. `hfcache serve` runs a node; point HF clients at it with
// HF_ENDPOINT=http://node:8080.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "hfcache:", err)
		os.Exit(exitCode(err))
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "hfcache",
		Short:         "A peer-to-peer cluster cache for Hugging Face Hub content",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCmd())
	addAdminCommands(root)
	return root
}
