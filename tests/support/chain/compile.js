// Compiles the test contracts into contracts.json (ABI + bytecode), offline, with solc-js:
//   npm install --prefix /tmp/solc solc@0.8.37
//   NODE_PATH=/tmp/solc/node_modules node tests/support/chain/compile.js
// The EVM version is shanghai: py-evm (eth-tester) and ganache both run it.
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const here = __dirname;
const sources = {};
for (const file of ["TestUSDC.sol", "SanctionsOracle.sol"]) {
  sources[file] = { content: fs.readFileSync(path.join(here, file), "utf8") };
}
const input = {
  language: "Solidity",
  sources,
  settings: {
    evmVersion: "shanghai",
    optimizer: { enabled: true, runs: 200 },
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
if (errors.length) {
  for (const e of errors) console.error(e.formattedMessage);
  process.exit(1);
}
const contracts = { compiler: solc.version(), evmVersion: input.settings.evmVersion };
for (const [file, byName] of Object.entries(output.contracts)) {
  for (const [name, contract] of Object.entries(byName)) {
    contracts[name] = { abi: contract.abi, bytecode: "0x" + contract.evm.bytecode.object };
  }
}
fs.writeFileSync(path.join(here, "contracts.json"), JSON.stringify(contracts, null, 1) + "\n");
console.log("wrote contracts.json:", Object.keys(contracts).join(", "));
