/* edgeloop example: reads samples from standard input, one per line (float
 * features separated by spaces or commas), runs the model on each and prints
 * the raw output tensor, one line per sample (integers for an int8 output
 * tensor, floats for a float32 one).
 *
 *   ./example < samples.txt
 *   ./example --bench 1000 < samples.txt   # latency of the first sample
 */
#include <chrono>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edge-impulse-sdk/classifier/ei_run_classifier.h"
#include "tflite-model/trained_model_compiled.h"

static float features[EI_CLASSIFIER_NN_INPUT_FRAME_SIZE];

/* Reads one sample; returns the number of features, or -1 at end of input. */
static int read_sample(FILE* in, int* overflow) {
  char token[64];
  int len = 0;
  int count = 0;
  int any = 0;
  *overflow = 0;
  for (;;) {
    const int c = fgetc(in);
    const bool end_line = (c == '\n' || c == EOF);
    if (c == ' ' || c == ',' || c == '\t' || c == '\r' || end_line) {
      if (len > 0) {
        token[len] = '\0';
        if (count < EI_CLASSIFIER_NN_INPUT_FRAME_SIZE) {
          features[count] = strtof(token, NULL);
        } else {
          *overflow = 1;
        }
        ++count;
        len = 0;
      }
      if (end_line) {
        if (c == EOF && !any) return -1;
        return count;
      }
    } else if (len < static_cast<int>(sizeof(token)) - 1) {
      token[len++] = static_cast<char>(c);
    }
    any = 1;
  }
}

static void print_output(void) {
  const el_output_t* out = trained_model_output();
  for (int i = 0; i < EL_OUTPUT_ELEMENTS; ++i) {
#if EL_OUTPUT_INT8
    printf(i ? " %d" : "%d", static_cast<int>(out[i]));
#else
    printf(i ? " %.9g" : "%.9g", static_cast<double>(out[i]));
#endif
  }
  printf("\n");
}

int main(int argc, char** argv) {
  long bench = 0;
  if (argc == 3 && strcmp(argv[1], "--bench") == 0) bench = strtol(argv[2], NULL, 10);
  result_t result;
  int line = 0;
  for (;;) {
    int overflow = 0;
    const int n = read_sample(stdin, &overflow);
    if (n < 0) break;
    ++line;
    if (n == 0) continue; /* blank line */
    if (n != EI_CLASSIFIER_NN_INPUT_FRAME_SIZE) {
      fprintf(stderr, "line %d: expected %d features, got %d\n", line,
              EI_CLASSIFIER_NN_INPUT_FRAME_SIZE, n);
      return 1;
    }
    if (bench > 0) {
      const std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
      for (long i = 0; i < bench; ++i) run_classifier(features, static_cast<size_t>(n), &result);
      const std::chrono::steady_clock::time_point t1 = std::chrono::steady_clock::now();
      const double us = std::chrono::duration<double, std::micro>(t1 - t0).count();
      printf("latency_us %.3f\n", us / static_cast<double>(bench));
      return 0;
    }
    if (run_classifier(features, static_cast<size_t>(n), &result) != EI_IMPULSE_OK) {
      fprintf(stderr, "line %d: run_classifier failed\n", line);
      return 1;
    }
    print_output();
  }
  return 0;
}
