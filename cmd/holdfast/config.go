package main

import (
	"flag"
	"fmt"
	"io"
	"os"
)

func runConfig(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprintln(stderr, "Usage: holdfast config check FILE\n\nValidates FILE (and HOLDFAST_* overrides); exit code 2 names the bad field.")
		return exitInvalid
	}
	fs := flag.NewFlagSet("config check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args[1:]); err != nil {
		return flagExit(err)
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "Usage: holdfast config check FILE")
		return exitInvalid
	}
	if _, err := os.Stat(fs.Arg(0)); err != nil {
		fmt.Fprintf(stderr, "holdfast: %v\n", err)
		return exitInvalid
	}
	cfg, code := loadConfig(fs.Arg(0), stderr)
	if code != exitOK {
		return code
	}
	fmt.Fprintf(stdout, "%s: valid (cluster %s, %d members)\n", fs.Arg(0), cfg.Cluster, len(cfg.MemberNames()))
	return exitOK
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintf(stdout, "holdfast %s\n", version)
	return exitOK
}
