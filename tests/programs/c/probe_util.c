/* A second object for the probe: a global function called across objects. */
#include <solana_sdk.h>

uint64_t probe_sum(uint64_t a, uint64_t b) { return a + b; }
