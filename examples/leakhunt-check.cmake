# SPDX-License-Identifier: MIT
# The example_leakhunt test: runs the leak hunt (PROG) and checks its key lines, in order.
execute_process(COMMAND ${PROG} OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "leakhunt exited with ${rc}:\n${out}${err}")
endif()
set(want
  "1\\. A receiver nobody will send to\n"
  "tether: leak: coroutine [0-9]+ can never be woken \\(abandoned receiver\\)\n"
  "no live party holds a reference to it"
  "the last live way to wake it went "
  "goroutine [0-9]+ \\[chan receive \\(leaked\\)\\]:\n"
  "marks it:\n    goroutine [0-9]+ \\[chan receive \\(leaked\\)\\]:\n"
  "tt_leak_verify_none\\(\\) fails:\n    tt_leak_verify_none: \"TestScene\": 1 coroutine left behind"
  "coroutine [0-9]+ \"receiver\": leaked \\(proven: nothing can wake it\\) \\[abandoned receiver\\]"
  "the exit check \\(TT_LEAKCHECK=1\\) said:\n    SUMMARY: tether LeakCheck: 1 coroutine alive when main returned, 1 proven leaked\\.\n"
  "2\\. A mutex its holder never unlocks\n"
  "tether: leak: coroutine [0-9]+ can never be woken \\(mutex held by an exited coroutine\\)\n"
  "which exited holding it"
  "the last live way to wake it went "
  "marks it:\n    goroutine [0-9]+ \\[sync\\.Mutex\\.Lock \\(leaked\\)\\]:\n"
  "3\\. A loop with no way out\n"
  "    goroutine [0-9]+ \\[sleep\\]:\n"
  "ticker"
  "leaks proven: 0\\."
  "coroutine [0-9]+ \"ticker\": still"
  "1\\. start_lookup[^\n]*: leaks proven 0, coroutines left 0\n"
  "2\\. handle[^\n]*: leaks proven 0, coroutines left 0\n"
  "3\\. ticker[^\n]*: leaks proven 0, coroutines left 0\n"
  "Eager mode printed nothing for the fixed versions\\.\n")
set(rest "${out}")
foreach(re ${want})
  string(REGEX MATCH "${re}" hit "${rest}")
  if(hit STREQUAL "")
    message(FATAL_ERROR "leakhunt: no line matching \"${re}\" (in order) in:\n${out}${err}")
  endif()
  string(FIND "${rest}" "${hit}" at)
  string(LENGTH "${hit}" len)
  math(EXPR at "${at} + ${len}")
  string(SUBSTRING "${rest}" ${at} -1 rest)
endforeach()
# Two proofs, both printed once; the loop is never called leaked.
string(REGEX MATCHALL "can never be woken" proofs "${out}")
list(LENGTH proofs n)
if(NOT n EQUAL 2)
  message(FATAL_ERROR "leakhunt: ${n} eager verdicts, want 2:\n${out}")
endif()
string(FIND "${out}" "3. A loop" loop)
string(SUBSTRING "${out}" ${loop} -1 tail)
if(tail MATCHES "\\(leaked\\)")
  message(FATAL_ERROR "leakhunt: something marked leaked after scene 2:\n${out}")
endif()
# Short enough to read.
string(REGEX MATCHALL "\n" lines "${out}")
list(LENGTH lines n)
if(n GREATER 120)
  message(FATAL_ERROR "leakhunt: ${n} lines, want at most 120")
endif()
