package main

import (
	"math/bits"
	"slices"
	"strconv"
)

// hist is a log-linear latency histogram in microseconds: exact below
// 128 µs, then 64 buckets per doubling, so a reported quantile is at most
// 1/64 (1.6 %) above the true one. It is what a load process sends back
// instead of every sample.
type hist struct {
	counts map[int]uint64
	n      uint64
	maxUS  uint64
}

const (
	histExact = 128 // values below are their own bucket
	histSub   = 64  // buckets per doubling above
)

func newHist() *hist { return &hist{counts: map[int]uint64{}} }

func histIndex(us uint64) int {
	if us < histExact {
		return int(us)
	}
	shift := bits.Len64(us) - 7 // >= 1: us>>shift is in [64, 128)
	return histExact + (shift-1)*histSub + int(us>>shift) - histSub
}

// histUpper is the largest value of bucket i.
func histUpper(i int) uint64 {
	if i < histExact {
		return uint64(i)
	}
	j := i - histExact
	shift := j/histSub + 1
	sub := uint64(j%histSub + histSub)
	return (sub+1)<<shift - 1
}

func (h *hist) add(us uint64) {
	h.counts[histIndex(us)]++
	h.n++
	h.maxUS = max(h.maxUS, us)
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.maxUS = max(h.maxUS, o.maxUS)
}

// quantile returns the upper bound of the bucket holding the q-quantile
// (0 < q <= 1), in microseconds.
func (h *hist) quantile(q float64) uint64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.999999)
	rank = min(max(rank, 1), h.n)
	idx := make([]int, 0, len(h.counts))
	for i := range h.counts {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	var seen uint64
	for _, i := range idx {
		seen += h.counts[i]
		if seen >= rank {
			return min(histUpper(i), h.maxUS)
		}
	}
	return h.maxUS
}

// histJSON is the wire form: bucket index (as a string key) to count.
type histJSON struct {
	Counts map[string]uint64 `json:"counts"`
	MaxUS  uint64            `json:"max_us"`
}

func (h *hist) toJSON() histJSON {
	out := histJSON{Counts: make(map[string]uint64, len(h.counts)), MaxUS: h.maxUS}
	for i, c := range h.counts {
		out.Counts[strconv.Itoa(i)] = c
	}
	return out
}

func histFromJSON(j histJSON) (*hist, error) {
	h := newHist()
	for k, c := range j.Counts {
		i, err := strconv.Atoi(k)
		if err != nil {
			return nil, err
		}
		h.counts[i] += c
		h.n += c
	}
	h.maxUS = j.MaxUS
	return h, nil
}
