-- busted --helper: make spec/ modules requirable from the source tree.
package.path = "spec/?.lua;" .. package.path
