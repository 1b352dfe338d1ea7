// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IERC20} from "./lib/IERC20.sol";
import {ReentrancyGuard} from "./lib/ReentrancyGuard.sol";
import {TokenTransfers} from "./lib/TokenTransfers.sol";
import {ProviderRegistry} from "./ProviderRegistry.sol";

/// @title EpochConsensus
/// @notice Staked validators score providers each epoch with commit-reveal. Finalizing an epoch
/// fixes each provider's consensus score (the highest score that validators holding at least
/// half the revealed stake gave or exceeded: the stake-weighted median; the finalizer supplies the
/// scores, computed off chain, and the contract checks each one exactly in one pass), clips every validator's
/// scores to it (as Yuma consensus does), updates each provider's reputation, and splits the
/// epoch's reward among providers by consensus score and among validators by stake times agreement
/// (sum of min(score, consensus) over sum of max(score, consensus)). A slashing proposal with
/// evidence passes when validators holding at least 2/3 of the validator stake vote for it.
/// Bounded: at most 64 validators and 256 providers per epoch.
contract EpochConsensus is ReentrancyGuard {
    using TokenTransfers for IERC20;

    uint256 public constant MAX_VALIDATORS = 64;
    uint256 public constant MAX_PROVIDERS = 256;
    uint16 public constant MAX_SCORE = 10_000;
    uint256 public constant MAX_EVIDENCE_BYTES = 16_384;
    uint256 private constant SCORES_PER_WORD = 16;

    /// @notice A validator's stake.
    struct Validator {
        uint256 stake;
        uint256 unbonding;
        uint64 unbondingReleaseAt;
        /// @notice The value of `stakeIncreases` after this validator's latest stake increase.
        uint64 lastIncrease;
    }

    /// @notice A validator's commitment for one epoch; `weight` is its stake when it committed.
    struct Commitment {
        bytes32 hash;
        uint128 weight;
        bool revealed;
    }

    /// @notice An epoch's state.
    struct Epoch {
        address[] providers;
        address[] committers;
        uint32 revealed;
        bool opened;
        bool finalized;
    }

    /// @notice A provider's on-chain reputation: the last consensus score and a moving average
    /// (reputation = (3 * reputation + score) / 4), both out of MAX_SCORE, and its unclaimed rewards.
    struct Standing {
        uint16 lastScore;
        uint16 reputation;
        uint64 lastEpoch;
        bool scored;
        uint128 unclaimedReward;
    }

    /// @notice A slashing proposal; it passes when `yesStake` reaches 2/3 of `totalStake`, the
    /// validator stake when it was proposed (so unbonding after voting cannot lower the bar).
    struct SlashProposal {
        address provider;
        uint64 deadline;
        bool executed;
        address proposer;
        uint256 amount;
        bytes32 evidenceHash;
        uint256 yesStake;
        uint256 totalStake;
        uint64 stakeIncreasesAtProposal;
    }

    /// @dev An epoch's tally while finalizing.
    struct Tally {
        address[] providers;
        address[] revealers;
        uint256[][] words;
        uint256[] weights;
        uint256 totalWeight;
        uint256[] consensus;
        uint256 consensusSum;
        uint256[] agreeMin;
        uint256[] agreeMax;
    }

    IERC20 public immutable token;
    ProviderRegistry public immutable providerRegistry;
    uint256 public immutable minimumValidatorStake;
    uint64 public immutable validatorUnbondingPeriod;
    uint64 public immutable genesis;
    uint64 public immutable epochLength;
    uint64 public immutable revealPeriod;
    uint64 public immutable votingPeriod;
    uint256 public immutable rewardPerEpoch;
    uint16 public immutable validatorShareBps;

    uint256 public rewardPool;
    /// @notice Counts validator stake increases; a validator whose stake grew after a proposal cannot vote on it.
    uint64 public stakeIncreases;
    uint256 public totalValidatorStake;
    mapping(address validator => uint256) private validatorRewards;

    mapping(address validator => Validator) private validators;
    mapping(address validator => uint256) private validatorIndexPlusOne;
    address[] private validatorList;
    mapping(uint256 epoch => Epoch) private epochs;
    mapping(uint256 epoch => mapping(address validator => Commitment)) private commitments;
    mapping(uint256 epoch => mapping(address validator => uint256[])) private packedScores;
    mapping(uint256 epoch => uint256[]) private packedConsensus;
    mapping(address provider => Standing) private standings;
    SlashProposal[] private proposals;
    mapping(uint256 proposalId => mapping(address validator => bool)) private votedOn;
    /// @dev The id + 1 of each provider's latest slashing proposal (0: none), so that one offence is punished once.
    mapping(address provider => uint256) private latestProposalPlusOne;

    event ValidatorRegistered(address indexed validator, uint256 stake);
    event ValidatorStakeAdded(address indexed validator, uint256 amount, uint256 stake);
    event ValidatorUnbondingRequested(address indexed validator, uint256 amount, uint64 releaseAt);
    event ValidatorWithdrawn(address indexed validator, uint256 amount);
    event EpochOpened(uint256 indexed epoch, uint256 providers);
    event ScoresCommitted(uint256 indexed epoch, address indexed validator, bytes32 commitment);
    event ScoresRevealed(uint256 indexed epoch, address indexed validator, uint16[] scores);
    event ProviderScored(uint256 indexed epoch, address indexed provider, uint16 score, uint16 reputation, uint256 reward);
    event ValidatorRewarded(uint256 indexed epoch, address indexed validator, uint256 agreementBps, uint256 reward);
    event EpochFinalized(uint256 indexed epoch, uint256 validators, uint256 providers, uint256 distributed);
    event RewardsFunded(address indexed from, uint256 amount);
    event RewardsClaimed(address indexed account, uint256 amount);
    event SlashProposed(
        uint256 indexed proposalId,
        address indexed provider,
        address indexed proposer,
        uint256 amount,
        bytes32 evidenceHash,
        bytes evidence
    );
    event SlashVoted(uint256 indexed proposalId, address indexed validator, uint256 stake, uint256 yesStake);
    event SlashExecuted(uint256 indexed proposalId, address indexed provider, uint256 slashed);

    /// @notice The caller has no validator stake.
    error NotValidator(address caller);
    /// @notice The validator is registered already.
    error AlreadyValidator(address validator);
    /// @notice MAX_VALIDATORS validators are registered (or committed this epoch) already.
    error ValidatorSetFull(uint256 maximum);
    /// @notice A validator's stake must be zero or at least the minimum.
    error StakeBelowMinimum(uint256 stake, uint256 minimum);
    /// @notice Amounts must be positive.
    error ZeroAmount();
    /// @notice More than the bonded stake was asked to unbond.
    error InsufficientStake(uint256 stake, uint256 requested);
    /// @notice Nothing is unbonding.
    error NothingUnbonding();
    /// @notice The unbonding period ends at `releaseAt`.
    error UnbondingNotFinished(uint64 releaseAt);
    /// @notice Commitments for `epoch` are accepted only during it (now: `current`).
    error NotCommitPhase(uint256 epoch, uint256 current);
    /// @notice Reveals for `epoch` are accepted from `opensAt` until `closesAt`.
    error NotRevealPhase(uint256 epoch, uint64 opensAt, uint64 closesAt);
    /// @notice `epoch` can be finalized from `opensAt`.
    error NotFinalizePhase(uint256 epoch, uint64 opensAt);
    /// @notice The epoch had no commitment, so there is nothing to finalize.
    error EpochNotOpened(uint256 epoch);
    /// @notice The epoch is finalized already.
    error EpochAlreadyFinalized(uint256 epoch);
    /// @notice More than MAX_PROVIDERS active providers.
    error TooManyProviders(uint256 count, uint256 maximum);
    /// @notice The commitment must not be zero.
    error ZeroCommitment();
    /// @notice The validator revealed this epoch already.
    error AlreadyRevealed(uint256 epoch, address validator);
    /// @notice The validator did not commit this epoch.
    error NoCommitment(uint256 epoch, address validator);
    /// @notice The revealed scores and salt do not hash to the commitment.
    error RevealMismatch(uint256 epoch, address validator);
    /// @notice One score per provider of the epoch, in the epoch's provider order.
    error ScoreCountMismatch(uint256 given, uint256 expected);
    /// @notice Scores are at most MAX_SCORE.
    error ScoreOutOfRange(uint256 index, uint256 score);
    /// @notice The provider is not registered.
    error UnknownProvider(address provider);
    /// @notice Evidence is required and at most MAX_EVIDENCE_BYTES.
    error InvalidEvidence(uint256 length);
    /// @notice No proposal has this id.
    error UnknownProposal(uint256 proposalId);
    /// @notice The proposal was executed already.
    error ProposalExecuted(uint256 proposalId);
    /// @notice Voting on the proposal ended at `deadline`.
    error ProposalExpired(uint256 proposalId, uint64 deadline);
    /// @notice The validator voted on this proposal already.
    error AlreadyVoted(uint256 proposalId, address validator);
    /// @notice The provider already has a slashing proposal open: vote on it instead of proposing another.
    error SlashAlreadyProposed(address provider, uint256 proposalId);
    /// @notice The voter registered or added stake after the proposal was made, so it cannot vote on it.
    error StakeAddedAfterProposal(uint256 proposalId, address validator);
    /// @notice Nothing to claim.
    error NothingToClaim(address account);
    /// @notice One consensus score per provider of the epoch, in its order.
    error ConsensusLengthMismatch(uint256 given, uint256 expected);
    /// @notice `score` is not the stake-weighted median of the revealed scores for provider `index`.
    error WrongConsensus(uint256 index, uint256 score);
    /// @notice Constructor parameters that cannot work.
    error InvalidConfiguration(string reason);

    constructor(
        IERC20 token_,
        ProviderRegistry providerRegistry_,
        uint256 minimumValidatorStake_,
        uint64 validatorUnbondingPeriod_,
        uint64 epochLength_,
        uint64 revealPeriod_,
        uint64 votingPeriod_,
        uint256 rewardPerEpoch_,
        uint16 validatorShareBps_
    ) {
        if (minimumValidatorStake_ == 0) revert InvalidConfiguration("minimum validator stake is zero");
        if (epochLength_ == 0 || revealPeriod_ == 0 || revealPeriod_ >= epochLength_) {
            revert InvalidConfiguration("the reveal period must be positive and shorter than an epoch");
        }
        if (votingPeriod_ == 0 || votingPeriod_ > validatorUnbondingPeriod_) {
            revert InvalidConfiguration("the voting period must be positive and at most the unbonding period");
        }
        if (validatorShareBps_ > 10_000) revert InvalidConfiguration("validator share above 10000 bps");
        if (validatorUnbondingPeriod_ < epochLength_ + revealPeriod_) {
            revert InvalidConfiguration("validator unbonding must last at least an epoch plus its reveal period");
        }
        if (providerRegistry_.unbondingPeriod() < votingPeriod_) {
            revert InvalidConfiguration("provider unbonding must last at least the voting period");
        }
        token = token_;
        providerRegistry = providerRegistry_;
        minimumValidatorStake = minimumValidatorStake_;
        validatorUnbondingPeriod = validatorUnbondingPeriod_;
        genesis = uint64(block.timestamp);
        epochLength = epochLength_;
        revealPeriod = revealPeriod_;
        votingPeriod = votingPeriod_;
        rewardPerEpoch = rewardPerEpoch_;
        validatorShareBps = validatorShareBps_;
    }

    // ---- validators ----

    /// @notice Registers the sender as a validator with `amount` tokens (approved beforehand).
    function registerValidator(uint256 amount) external nonReentrant {
        if (validatorIndexPlusOne[msg.sender] != 0) revert AlreadyValidator(msg.sender);
        if (validatorList.length >= MAX_VALIDATORS) revert ValidatorSetFull(MAX_VALIDATORS);
        if (amount < minimumValidatorStake) revert StakeBelowMinimum(amount, minimumValidatorStake);
        validatorList.push(msg.sender);
        validatorIndexPlusOne[msg.sender] = validatorList.length;
        uint256 received = token.pull(msg.sender, amount);
        if (received < minimumValidatorStake) revert StakeBelowMinimum(received, minimumValidatorStake);
        validators[msg.sender].stake = received;
        validators[msg.sender].lastIncrease = ++stakeIncreases;
        totalValidatorStake += received;
        emit ValidatorRegistered(msg.sender, received);
    }

    /// @notice Adds to the sender's validator stake.
    function addValidatorStake(uint256 amount) external nonReentrant {
        Validator storage validator = _validator(msg.sender);
        if (amount == 0) revert ZeroAmount();
        uint256 received = token.pull(msg.sender, amount);
        validator.stake += received;
        validator.lastIncrease = ++stakeIncreases;
        totalValidatorStake += received;
        emit ValidatorStakeAdded(msg.sender, received, validator.stake);
    }

    /// @notice Starts unbonding `amount`; what stays bonded must be zero or at least the minimum.
    function requestValidatorUnbond(uint256 amount) external {
        Validator storage validator = _validator(msg.sender);
        if (amount == 0) revert ZeroAmount();
        if (amount > validator.stake) revert InsufficientStake(validator.stake, amount);
        uint256 remaining = validator.stake - amount;
        if (remaining != 0 && remaining < minimumValidatorStake) {
            revert StakeBelowMinimum(remaining, minimumValidatorStake);
        }
        validator.stake = remaining;
        validator.unbonding += amount;
        validator.unbondingReleaseAt = uint64(block.timestamp) + validatorUnbondingPeriod;
        totalValidatorStake -= amount;
        emit ValidatorUnbondingRequested(msg.sender, amount, validator.unbondingReleaseAt);
    }

    /// @notice Sends the sender its unbonded validator stake after the period; removes a validator left with none.
    function withdrawValidatorStake() external nonReentrant {
        Validator storage validator = _validator(msg.sender);
        uint256 amount = validator.unbonding;
        if (amount == 0) revert NothingUnbonding();
        if (block.timestamp < validator.unbondingReleaseAt) revert UnbondingNotFinished(validator.unbondingReleaseAt);
        validator.unbonding = 0;
        validator.unbondingReleaseAt = 0;
        if (validator.stake == 0) _removeValidator(msg.sender);
        token.send(msg.sender, amount);
        emit ValidatorWithdrawn(msg.sender, amount);
    }

    // ---- epochs ----

    /// @notice The epoch now: epochs are `epochLength` seconds from `genesis`.
    function currentEpoch() public view returns (uint256) {
        return (block.timestamp - genesis) / epochLength;
    }

    /// @notice When `epoch` ends (and its reveal phase starts).
    function epochEnd(uint256 epoch) public view returns (uint64) {
        return uint64(genesis + (epoch + 1) * epochLength);
    }

    /// @notice The hash a validator commits: keccak256(abi.encode(epoch, validator, scores, salt)).
    function commitmentHash(uint256 epoch, address validator, uint16[] calldata scores, bytes32 salt)
        public
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(epoch, validator, scores, salt));
    }

    /// @notice Commits to this epoch's scores; the first commitment of an epoch fixes its provider
    /// list (the active providers now). A validator may replace its commitment until the epoch ends.
    function commit(uint256 epoch, bytes32 commitment) external {
        uint256 current = currentEpoch();
        if (epoch != current) revert NotCommitPhase(epoch, current);
        Validator storage validator = _validator(msg.sender);
        if (validator.stake == 0) revert NotValidator(msg.sender);
        if (commitment == bytes32(0)) revert ZeroCommitment();
        Epoch storage state = epochs[epoch];
        if (!state.opened) _openEpoch(epoch, state);
        Commitment storage existing = commitments[epoch][msg.sender];
        if (existing.hash == bytes32(0)) {
            if (state.committers.length >= MAX_VALIDATORS) revert ValidatorSetFull(MAX_VALIDATORS);
            state.committers.push(msg.sender);
        }
        if (validator.stake > type(uint128).max) revert InsufficientStake(validator.stake, type(uint128).max);
        existing.hash = commitment;
        existing.weight = uint128(validator.stake);
        emit ScoresCommitted(epoch, msg.sender, commitment);
    }

    /// @notice Reveals the committed scores (one per provider of the epoch, in its order, each <= MAX_SCORE).
    function reveal(uint256 epoch, uint16[] calldata scores, bytes32 salt) external {
        uint64 opensAt = epochEnd(epoch);
        uint64 closesAt = opensAt + revealPeriod;
        if (block.timestamp < opensAt || block.timestamp >= closesAt) revert NotRevealPhase(epoch, opensAt, closesAt);
        Commitment storage commitment = commitments[epoch][msg.sender];
        if (commitment.hash == bytes32(0)) revert NoCommitment(epoch, msg.sender);
        if (commitment.revealed) revert AlreadyRevealed(epoch, msg.sender);
        Epoch storage state = epochs[epoch];
        if (scores.length != state.providers.length) revert ScoreCountMismatch(scores.length, state.providers.length);
        if (commitmentHash(epoch, msg.sender, scores, salt) != commitment.hash) revert RevealMismatch(epoch, msg.sender);
        uint256[] storage words = packedScores[epoch][msg.sender];
        uint256 word = 0;
        for (uint256 i = 0; i < scores.length; i++) {
            uint256 score = scores[i];
            if (score > MAX_SCORE) revert ScoreOutOfRange(i, score);
            word |= score << (16 * (i % SCORES_PER_WORD));
            if (i % SCORES_PER_WORD == SCORES_PER_WORD - 1 || i == scores.length - 1) {
                words.push(word);
                word = 0;
            }
        }
        commitment.revealed = true;
        state.revealed += 1;
        emit ScoresRevealed(epoch, msg.sender, scores);
    }

    /// @notice Fixes consensus, reputation and rewards for an epoch once its reveal phase is over; anyone
    /// may call. `consensus` holds each provider's stake-weighted median (see the contract notes), in the
    /// epoch's order; each is checked, and a wrong one reverts with WrongConsensus. With no reveal it may be empty.
    function finalize(uint256 epoch, uint16[] calldata consensus) external {
        uint64 opensAt = epochEnd(epoch) + revealPeriod;
        if (block.timestamp < opensAt) revert NotFinalizePhase(epoch, opensAt);
        Epoch storage state = epochs[epoch];
        if (!state.opened) revert EpochNotOpened(epoch);
        if (state.finalized) revert EpochAlreadyFinalized(epoch);
        state.finalized = true;

        Tally memory tally = _tally(epoch, state, consensus);
        uint256 validatorCount = tally.revealers.length;
        uint256 providerCount = tally.providers.length;
        if (validatorCount == 0 || providerCount == 0) {
            emit EpochFinalized(epoch, validatorCount, providerCount, 0);
            return;
        }
        uint256 pool = rewardPerEpoch < rewardPool ? rewardPerEpoch : rewardPool;
        uint256 validatorPart = pool * validatorShareBps / 10_000;
        uint256 distributed = _payProviders(epoch, tally, pool - validatorPart);
        distributed += _payValidators(epoch, tally, validatorPart);
        rewardPool -= distributed;
        emit EpochFinalized(epoch, validatorCount, providerCount, distributed);
    }

    /// @notice Adds `amount` (approved beforehand) to the reward pool.
    function fundRewards(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        uint256 received = token.pull(msg.sender, amount);
        rewardPool += received;
        emit RewardsFunded(msg.sender, received);
    }

    /// @notice Rewards an account can claim (as validator and as provider).
    function claimable(address account) public view returns (uint256) {
        return validatorRewards[account] + standings[account].unclaimedReward;
    }

    /// @notice Sends the sender its rewards.
    function claimRewards() external nonReentrant returns (uint256 amount) {
        amount = claimable(msg.sender);
        if (amount == 0) revert NothingToClaim(msg.sender);
        validatorRewards[msg.sender] = 0;
        standings[msg.sender].unclaimedReward = 0;
        token.send(msg.sender, amount);
        emit RewardsClaimed(msg.sender, amount);
    }

    // ---- slashing ----

    /// @notice Proposes slashing `amount` of a provider's stake, with evidence (e.g. an audit
    /// record); the proposer votes for it. Validators only.
    function proposeSlash(address provider, uint256 amount, bytes calldata evidence)
        external
        returns (uint256 proposalId)
    {
        Validator storage validator = _validator(msg.sender);
        if (validator.stake == 0) revert NotValidator(msg.sender);
        if (!providerRegistry.isRegistered(provider)) revert UnknownProvider(provider);
        if (amount == 0) revert ZeroAmount();
        if (evidence.length == 0 || evidence.length > MAX_EVIDENCE_BYTES) revert InvalidEvidence(evidence.length);
        // One open proposal per provider: validators that catch the same cheat at once vote on the first proposal
        // rather than each executing a slash of their own.
        uint256 latest = latestProposalPlusOne[provider];
        if (latest != 0) {
            SlashProposal storage open = proposals[latest - 1];
            if (!open.executed && block.timestamp < open.deadline) revert SlashAlreadyProposed(provider, latest - 1);
        }
        proposalId = proposals.length;
        latestProposalPlusOne[provider] = proposalId + 1;
        bytes32 evidenceHash = keccak256(evidence);
        proposals.push(
            SlashProposal({
                provider: provider,
                deadline: uint64(block.timestamp) + votingPeriod,
                executed: false,
                proposer: msg.sender,
                amount: amount,
                evidenceHash: evidenceHash,
                yesStake: 0,
                totalStake: totalValidatorStake,
                stakeIncreasesAtProposal: stakeIncreases
            })
        );
        emit SlashProposed(proposalId, provider, msg.sender, amount, evidenceHash, evidence);
        _vote(proposalId, msg.sender, validator);
    }

    /// @notice Votes for a slashing proposal; it executes once >= 2/3 of validator stake voted for it.
    function voteSlash(uint256 proposalId) external {
        Validator storage validator = _validator(msg.sender);
        if (validator.stake == 0) revert NotValidator(msg.sender);
        _vote(proposalId, msg.sender, validator);
    }

    // ---- views ----

    /// @notice A validator's stake record.
    function getValidator(address validator) external view returns (Validator memory) {
        return validators[validator];
    }

    /// @notice The registered validators.
    function validatorAddresses() external view returns (address[] memory) {
        return validatorList;
    }

    /// @notice An epoch's providers (in score order), committers, reveal count and whether it is finalized.
    function getEpoch(uint256 epoch) external view returns (Epoch memory) {
        return epochs[epoch];
    }

    /// @notice A validator's commitment for an epoch.
    function getCommitment(uint256 epoch, address validator) external view returns (Commitment memory) {
        return commitments[epoch][validator];
    }

    /// @notice A finalized epoch's consensus scores, in the epoch's provider order.
    function consensusScores(uint256 epoch) external view returns (uint16[] memory scores) {
        uint256 count = epochs[epoch].providers.length;
        uint256[] storage words = packedConsensus[epoch];
        if (words.length == 0) return new uint16[](0);
        scores = new uint16[](count);
        for (uint256 i = 0; i < count; i++) {
            scores[i] = uint16(_scoreAtStorage(words, i));
        }
    }

    /// @notice A revealed validator's scores for an epoch, in the epoch's provider order (empty before its reveal).
    function revealedScores(uint256 epoch, address validator) external view returns (uint16[] memory scores) {
        uint256[] storage words = packedScores[epoch][validator];
        if (words.length == 0) return new uint16[](0);
        uint256 count = epochs[epoch].providers.length;
        scores = new uint16[](count);
        for (uint256 i = 0; i < count; i++) {
            scores[i] = uint16(_scoreAtStorage(words, i));
        }
    }

    /// @notice A provider's reputation.
    function standingOf(address provider) external view returns (Standing memory) {
        return standings[provider];
    }

    /// @notice A slashing proposal.
    function getProposal(uint256 proposalId) external view returns (SlashProposal memory) {
        if (proposalId >= proposals.length) revert UnknownProposal(proposalId);
        return proposals[proposalId];
    }

    /// @notice How many slashing proposals were made.
    function proposalCount() external view returns (uint256) {
        return proposals.length;
    }

    /// @notice Whether a validator voted on a proposal.
    function hasVoted(uint256 proposalId, address validator) external view returns (bool) {
        return votedOn[proposalId][validator];
    }

    // ---- internals ----

    function _validator(address account) private view returns (Validator storage) {
        if (validatorIndexPlusOne[account] == 0) revert NotValidator(account);
        return validators[account];
    }

    function _removeValidator(address account) private {
        uint256 index = validatorIndexPlusOne[account] - 1;
        address last = validatorList[validatorList.length - 1];
        validatorList[index] = last;
        validatorIndexPlusOne[last] = index + 1;
        validatorList.pop();
        delete validatorIndexPlusOne[account];
        delete validators[account];
    }

    function _openEpoch(uint256 epoch, Epoch storage state) private {
        address[] memory active = providerRegistry.activeProviders();
        if (active.length > MAX_PROVIDERS) revert TooManyProviders(active.length, MAX_PROVIDERS);
        state.providers = active;
        state.opened = true;
        emit EpochOpened(epoch, active.length);
    }

    function _tally(uint256 epoch, Epoch storage state, uint16[] calldata consensus)
        private
        view
        returns (Tally memory tally)
    {
        tally.providers = state.providers;
        address[] memory committers = state.committers;
        uint256 count = state.revealed;
        tally.revealers = new address[](count);
        tally.words = new uint256[][](count);
        tally.weights = new uint256[](count);
        uint256 next = 0;
        for (uint256 i = 0; i < committers.length; i++) {
            Commitment storage commitment = commitments[epoch][committers[i]];
            if (!commitment.revealed) continue;
            tally.revealers[next] = committers[i];
            tally.words[next] = packedScores[epoch][committers[i]];
            tally.weights[next] = commitment.weight;
            tally.totalWeight += commitment.weight;
            next++;
        }
        uint256 providerCount = tally.providers.length;
        tally.consensus = new uint256[](providerCount);
        tally.agreeMin = new uint256[](count);
        tally.agreeMax = new uint256[](count);
        if (count == 0) return tally;
        if (consensus.length != providerCount) revert ConsensusLengthMismatch(consensus.length, providerCount);
        uint256[] memory claimed = new uint256[](providerCount);
        for (uint256 p = 0; p < providerCount; p++) {
            if (consensus[p] > MAX_SCORE) revert ScoreOutOfRange(p, consensus[p]);
            claimed[p] = consensus[p];
        }
        // counts[p]: weight of validators giving provider p at least the claimed score; counts[n + p]: more.
        uint256[] memory counts = new uint256[](2 * providerCount);
        for (uint256 v = 0; v < count; v++) {
            (tally.agreeMin[v], tally.agreeMax[v]) = _tallyValidator(tally.words[v], tally.weights[v], claimed, counts);
        }
        // The claimed score is the highest s with weight(given >= s) * 2 >= total, exactly when
        // weight(given >= score) * 2 >= total and weight(given > score) * 2 < total.
        uint256 total = tally.totalWeight;
        for (uint256 p = 0; p < providerCount; p++) {
            if (counts[p] * 2 < total || counts[providerCount + p] * 2 >= total) revert WrongConsensus(p, claimed[p]);
        }
        tally.consensus = claimed;
        for (uint256 p = 0; p < providerCount; p++) {
            tally.consensusSum += claimed[p];
        }
    }

    /// @dev One validator against the claimed consensus: adds its weight to `counts[p]` where its score
    /// is >= the claim and to `counts[n + p]` where it is > the claim, and returns its sums of min and max
    /// of (score, claim). The words hold ceil(n / 16) packed scores (every reveal has one score per
    /// provider), so every read is in bounds; sums cannot overflow (weights < 2^128, <= 256 scores of 10000).
    function _tallyValidator(uint256[] memory words, uint256 weight, uint256[] memory claimed, uint256[] memory counts)
        private
        pure
        returns (uint256 sumMin, uint256 sumMax)
    {
        assembly ("memory-safe") {
            let n := mload(claimed)
            let aboveOffset := shl(5, n)
            for { let p := 0 } lt(p, n) { p := add(p, 1) } {
                let given := and(shr(shl(4, and(p, 15)), mload(add(words, add(0x20, shl(5, shr(4, p)))))), 0xffff)
                let offset := add(0x20, shl(5, p))
                let score := mload(add(claimed, offset))
                switch lt(given, score)
                case 0 {
                    let slot := add(counts, offset)
                    mstore(slot, add(mload(slot), weight))
                    if gt(given, score) {
                        slot := add(slot, aboveOffset)
                        mstore(slot, add(mload(slot), weight))
                    }
                    sumMin := add(sumMin, score)
                    sumMax := add(sumMax, given)
                }
                default {
                    sumMin := add(sumMin, given)
                    sumMax := add(sumMax, score)
                }
            }
        }
    }

    function _scoreAtStorage(uint256[] storage words, uint256 index) private view returns (uint256) {
        return (words[index / SCORES_PER_WORD] >> (16 * (index % SCORES_PER_WORD))) & 0xffff;
    }

    function _payProviders(uint256 epoch, Tally memory tally, uint256 providerPart)
        private
        returns (uint256 distributed)
    {
        address[] memory providerList = tally.providers;
        uint256[] storage packed = packedConsensus[epoch];
        uint256 word = 0;
        for (uint256 p = 0; p < providerList.length; p++) {
            uint256 score = tally.consensus[p];
            word |= score << (16 * (p % SCORES_PER_WORD));
            if (p % SCORES_PER_WORD == SCORES_PER_WORD - 1 || p == providerList.length - 1) {
                packed.push(word);
                word = 0;
            }
            Standing memory standing = standings[providerList[p]];
            uint16 reputation =
                standing.scored ? uint16((uint256(standing.reputation) * 3 + score) / 4) : uint16(score);
            uint256 reward = tally.consensusSum == 0 ? 0 : providerPart * score / tally.consensusSum;
            // One storage write per provider: score, reputation and reward share a slot.
            standings[providerList[p]] = Standing({
                lastScore: uint16(score),
                reputation: reputation,
                lastEpoch: uint64(epoch),
                scored: true,
                unclaimedReward: uint128(standing.unclaimedReward + reward)
            });
            distributed += reward;
            emit ProviderScored(epoch, providerList[p], uint16(score), reputation, reward);
        }
    }

    function _payValidators(uint256 epoch, Tally memory tally, uint256 validatorPart)
        private
        returns (uint256 distributed)
    {
        address[] memory revealers = tally.revealers;
        uint256[] memory weights = tally.weights;
        uint256 count = revealers.length;
        uint256[] memory agreement = new uint256[](count);
        uint256 weightedSum = 0;
        for (uint256 v = 0; v < count; v++) {
            agreement[v] = tally.agreeMax[v] == 0 ? 10_000 : tally.agreeMin[v] * 10_000 / tally.agreeMax[v];
            weightedSum += weights[v] * agreement[v];
        }
        for (uint256 v = 0; v < count; v++) {
            uint256 reward = weightedSum == 0 ? 0 : validatorPart * (weights[v] * agreement[v]) / weightedSum;
            if (reward != 0) validatorRewards[revealers[v]] += reward;
            distributed += reward;
            emit ValidatorRewarded(epoch, revealers[v], agreement[v], reward);
        }
    }

    /// @dev A vote weighs the voter's current stake, which (since its stake did not grow after the
    /// proposal) is at most its stake at proposal time: 2/3 of the snapshot needs 2/3 of the stake then.
    function _vote(uint256 proposalId, address voter, Validator storage validator) private {
        if (proposalId >= proposals.length) revert UnknownProposal(proposalId);
        SlashProposal storage proposal = proposals[proposalId];
        if (proposal.executed) revert ProposalExecuted(proposalId);
        if (block.timestamp >= proposal.deadline) revert ProposalExpired(proposalId, proposal.deadline);
        if (votedOn[proposalId][voter]) revert AlreadyVoted(proposalId, voter);
        if (validator.lastIncrease > proposal.stakeIncreasesAtProposal) revert StakeAddedAfterProposal(proposalId, voter);
        uint256 stake = validator.stake;
        votedOn[proposalId][voter] = true;
        proposal.yesStake += stake;
        emit SlashVoted(proposalId, voter, stake, proposal.yesStake);
        if (proposal.yesStake * 3 >= proposal.totalStake * 2) {
            proposal.executed = true;
            uint256 slashed = providerRegistry.slash(proposal.provider, proposal.amount, address(this));
            rewardPool += slashed;
            Standing storage standing = standings[proposal.provider];
            standing.reputation = 0;
            standing.lastScore = 0;
            standing.scored = true;
            emit SlashExecuted(proposalId, proposal.provider, slashed);
        }
    }
}
