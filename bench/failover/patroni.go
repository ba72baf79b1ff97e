package main

import "errors"

func newPatroni() (Target, error) {
	return nil, errors.New("patroni target: not implemented yet")
}
